"""The fine-tuning core on a tiny model: learning with each method, target-only labels,
length grouping, measured progress, cancel, checkpoints and resume. No Django, no worker.

The task is "count the letters": `count: a c b` -> `3`. The shared tiny model cannot learn
it with LoRA or prompt tuning: its embeddings are initialised with std 0.02 in 64
dimensions and tied to the output layer, so no hidden state can push a logit more than
about 1.3 above the rest, and the loss cannot fall far below log(512). The "learnable"
model here is the same architecture and tokenizer initialised with std 0.2.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from pathlib import Path
from typing import Any

import pytest

from workers.ml import loading
from workers.ml.params import DEFAULT_LEARNING_RATES, TemplateSnapshot, TrainParams
from workers.ml.prompts import TemplateSpec, load_kit
from workers.ml.training import common, sft

TEMPLATE = TemplateSnapshot(
    id=1,
    name="count",
    version=1,
    instruction="Count the letters.",
    example_format="",
    body="{instruction}\n{input}\n=",
    use_chat_template=False,
)
LEARNING_RATES = {"lora": 3e-2, "full": 3e-3, "prompt_tuning": 0.3}


def rows(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = rng.randint(1, 5)
        out.append(
            {"input": "count: " + " ".join(rng.choice("abcde") for _ in range(k)), "target": str(k)}
        )
    return out


TRAIN_ROWS = rows(160, seed=1)
EVAL_ROWS = rows(16, seed=2)


def render(text: str) -> str:
    return f"Count the letters.\n{text}\n="


def params(**overrides: Any) -> TrainParams:
    values: dict[str, Any] = {
        "model_ref": "learnable",
        "dataset_id": 1,
        "template": TEMPLATE,
        "method": "lora",
        "learning_rate": LEARNING_RATES[overrides.get("method", "lora")],
        "max_steps": 30,
        "batch_size": 8,
        "eval_every": 15,
        "checkpoint_every": 0,
        "eval_rows": 16,
        "max_seq_len": 64,
    }
    values.update(overrides)
    return TrainParams(**values)


@pytest.fixture(scope="module")
def learnable(tiny_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> loading.LoadedModel:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("learnable")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_folder / name, folder / name)
    config = LlamaConfig(
        vocab_size=512,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        initializer_range=0.2,
        bos_token_id=None,
        eos_token_id=0,
        pad_token_id=1,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=None, pad_token_id=1)
    model.save_pretrained(str(folder))
    return loading.load(loading.ModelSpec("local", str(folder)), folder.parent, device="cpu")


class Recorder:
    def __init__(self, cancel_after: int | None = None) -> None:
        self.steps: list[common.StepLog] = []
        self.evals: list[common.EvalLog] = []
        self.cancel_after = cancel_after
        self.asked = 0

    def on_step(self, log: common.StepLog) -> None:
        self.steps.append(log)

    def on_eval(self, log: common.EvalLog) -> None:
        self.evals.append(log)

    def should_cancel(self) -> bool:
        self.asked += 1
        return self.cancel_after is not None and len(self.steps) >= self.cancel_after


def run(
    loaded: loading.LoadedModel, out: Path, p: TrainParams, rec: Recorder | None = None, **kw: Any
) -> common.TrainResult:
    rec = rec or Recorder()
    return sft.train(
        loaded,
        p,
        TRAIN_ROWS,
        EVAL_ROWS,
        out_dir=out,
        render=render,
        on_step=rec.on_step,
        on_eval=rec.on_eval,
        should_cancel=rec.should_cancel,
        **kw,
    )


@pytest.fixture(scope="module")
def runs(
    learnable: loading.LoadedModel, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[common.TrainResult, Recorder, Path]]:
    """One 30-step run per method, shared by the tests that read their records."""
    out = {}
    for method in ("lora", "full", "prompt_tuning"):
        folder = tmp_path_factory.mktemp(method)
        rec = Recorder()
        extra = {"num_virtual_tokens": 4} if method == "prompt_tuning" else {}
        out[method] = (run(learnable, folder, params(method=method, **extra), rec), rec, folder)
    return out


# --- examples and batches ----------------------------------------------------------------


def test_labels_mask_the_prompt_and_count_only_target_tokens(
    learnable: loading.LoadedModel,
) -> None:
    tok = learnable.tokenizer
    data = common.prepare_examples(tok, TRAIN_ROWS[:5], render=render, max_seq_len=64)
    for example, row in zip(data.examples, TRAIN_ROWS[:5], strict=True):
        prompt = tok(render(row["input"]), add_special_tokens=False)["input_ids"]
        target = tok(" " + row["target"], add_special_tokens=False)["input_ids"]
        assert example.input_ids == prompt + target + [tok.eos_token_id]
        assert example.labels == [-100] * len(prompt) + target + [tok.eos_token_id]
        assert example.n_target_tokens == len(target) + 1
        assert sum(label != -100 for label in example.labels) == example.n_target_tokens


def test_a_target_after_a_newline_gets_no_extra_space() -> None:
    assert common.target_text("Summary:", "Done.") == " Done."
    assert common.target_text("<|im_start|>assistant\n", "Done.") == "Done."


def test_a_long_input_loses_its_end_and_a_row_whose_target_cannot_fit_is_dropped(
    learnable: loading.LoadedModel,
) -> None:
    tok = learnable.tokenizer
    long_input = "count: " + " ".join("abcde" * 20)
    data = common.prepare_examples(
        tok,
        [
            {"input": long_input, "target": "100"},
            {"input": "count: a", "target": "x " * 80},
            {"input": "count: a b", "target": "2"},
        ],
        render=render,
        max_seq_len=48,
    )
    assert data.dropped_rows == [1]
    assert data.truncated == 1
    cut, short = data.examples
    assert cut.length <= 48 and cut.truncated and cut.row == 0
    target = tok(" 100", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert cut.input_ids[-len(target) :] == target  # the target is kept whole
    prompt = tok.decode(cut.input_ids[: -len(target)])
    assert prompt.startswith("Count the letters.\ncount: a b c") and prompt.endswith("\n=")
    assert short.row == 2 and not short.truncated


def test_the_zero_shot_render_is_the_trials_prompt_text(tiny_folder: Path) -> None:
    kit = load_kit(tiny_folder, 4096)
    spec = common.template_spec(TEMPLATE)
    # A snapshot without shot_style (saved before chat-turn shots) ran its shots inline.
    assert spec == TemplateSpec(
        "Count the letters.", "", "{instruction}\n{input}\n=", False, "inline"
    )
    assert common.make_render(kit, spec)("count: a b") == render("count: a b")


def test_length_grouping_wastes_less_padding_than_random_order() -> None:
    rng = random.Random(0)
    lengths = [rng.randint(10, 200) for _ in range(400)]
    grouped = common.epoch_batches(lengths, 8, seed=0, epoch=0)
    order = list(range(400))
    random.Random(0).shuffle(order)
    plain = [order[i : i + 8] for i in range(0, 400, 8)]
    assert sorted(i for b in grouped for i in b) == list(range(400))  # every row once
    assert common.padding_fraction(grouped, lengths) < 0.1
    assert common.padding_fraction(plain, lengths) > 0.3
    assert max(lengths[i] for i in grouped[0]) == max(lengths)  # the longest batch first


def test_the_data_order_follows_the_seed_and_changes_each_epoch() -> None:
    lengths = list(range(50))
    assert common.epoch_batches(lengths, 4, 3, 0) == common.epoch_batches(lengths, 4, 3, 0)
    assert common.epoch_batches(lengths, 4, 3, 0) != common.epoch_batches(lengths, 4, 3, 1)
    assert common.epoch_batches(lengths, 4, 3, 0) != common.epoch_batches(lengths, 4, 4, 0)


# --- learning ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["lora", "full", "prompt_tuning"])
def test_each_method_learns_the_task(runs: dict[str, Any], method: str) -> None:
    result, rec, folder = runs[method]
    assert result.status == "succeeded" and result.steps == 30
    first_loss = result.history[0].loss
    assert result.final_train_loss is not None and result.final_train_loss < 0.7 * first_loss
    assert [e.step for e in result.evals] == [0, 15, 30]
    assert result.evals[-1].loss < 0.7 * result.evals[0].loss
    assert result.final_eval_loss == result.evals[-1].loss
    assert rec.evals == result.evals
    final = folder / "final"
    names = {f["path"] for f in sft.artifact_files(final)}
    assert {"training_config.json", "tokenizer.json"} <= names
    if method == "full":
        assert "model.safetensors" in names and "config.json" in names
    else:
        assert {"adapter_model.safetensors", "adapter_config.json"} <= names
    config = json.loads((final / "training_config.json").read_text())
    assert config["params"]["method"] == method
    assert config["template"]["body"] == TEMPLATE.body
    assert config["steps"] == 30 and config["final_eval_loss"] == result.final_eval_loss
    assert not (folder / "checkpoints").exists()


def test_the_trainable_parameters_are_the_methods(runs: dict[str, Any]) -> None:
    lora, full, prompt = (runs[m][0] for m in ("lora", "full", "prompt_tuning"))
    # q_proj 64->64 and v_proj 64->32, r=8, two layers
    assert lora.trainable_params == 2 * 8 * ((64 + 64) + (64 + 32))
    assert full.trainable_params == full.total_params
    assert prompt.trainable_params == 4 * 64


def test_training_leaves_the_cached_inference_model_alone(
    learnable: loading.LoadedModel, runs: dict[str, Any]
) -> None:
    from safetensors.torch import load_file

    saved = load_file(str(Path(learnable.path) / "model.safetensors"))
    current = learnable.model.state_dict()
    assert all(current[name].equal(tensor) for name, tensor in saved.items())
    assert not hasattr(learnable.model, "peft_config")


def test_progress_is_reported_every_step_with_measured_figures(
    learnable: loading.LoadedModel, runs: dict[str, Any]
) -> None:
    result, rec, _ = runs["lora"]
    assert [s.step for s in rec.steps] == list(range(1, 31))
    assert all(s.total_steps == 30 and s.device == "cpu" for s in rec.steps)
    assert rec.steps[-1].eta_s == 0 and rec.steps[0].eta_s > 0
    assert all(s.peak_memory_bytes > 0 for s in rec.steps)
    # linear decay from the learning rate, no warmup
    assert rec.steps[0].learning_rate == pytest.approx(3e-2)
    assert rec.steps[-1].learning_rate == pytest.approx(3e-2 / 30)
    # tokens are the real lengths of the rows each step trained on, never padding
    data = common.prepare_examples(learnable.tokenizer, TRAIN_ROWS, render=render, max_seq_len=64)
    lengths = [e.length for e in data.examples]
    batches = common.epoch_batches(lengths, 8, seed=0, epoch=0) + common.epoch_batches(
        lengths, 8, seed=0, epoch=1
    )
    for log, batch in zip(rec.steps, batches, strict=False):
        assert log.tokens == sum(lengths[i] for i in batch)
        assert log.target_tokens == sum(data.examples[i].n_target_tokens for i in batch)
    assert result.tokens == sum(s.tokens for s in rec.steps)
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches[:30])
    assert result.tokens < padded
    assert result.tokens_per_s == pytest.approx(result.tokens / result.train_seconds, rel=0.01)
    assert rec.steps[-1].epoch == pytest.approx(30 / 20)  # 160 rows / 8 = 20 batches an epoch


def test_a_run_by_epochs_takes_each_micro_batch_once(
    learnable: loading.LoadedModel, tmp_path: Path
) -> None:
    p = params(max_steps=None, epochs=1.0, batch_size=16, grad_accum=3, eval_rows=0)
    result = run(learnable, tmp_path, p)
    assert result.total_steps == 4 and result.steps == 4  # 10 micro-batches: 3 + 3 + 3 + 1
    assert result.epoch == 1.0
    assert result.tokens == sum(
        e.length
        for e in common.prepare_examples(
            learnable.tokenizer, TRAIN_ROWS, render=render, max_seq_len=64
        ).examples
    )
    assert result.evals == [] and result.final_eval_loss is None


def test_artifact_files_list_sizes_and_hashes(runs: dict[str, Any]) -> None:
    final = runs["lora"][2] / "final"
    files = sft.artifact_files(final)
    assert files == sorted(files, key=lambda f: f["path"])
    for f in files:
        data = (final / f["path"]).read_bytes()
        assert f["size"] == len(data)
        assert f["sha256"] == hashlib.sha256(data).hexdigest()


# --- cancel, checkpoints, resume ---------------------------------------------------------


def test_cancel_stops_at_the_next_step_and_keeps_only_complete_checkpoints(
    learnable: loading.LoadedModel, tmp_path: Path
) -> None:
    rec = Recorder(cancel_after=7)
    result = run(learnable, tmp_path, params(checkpoint_every=2), rec)
    assert result.status == "cancelled" and result.steps == 7
    assert [s.step for s in rec.steps] == list(range(1, 8))
    assert rec.asked == 8  # asked before every step; the eighth answer stopped the run
    assert result.final_dir is None and not (tmp_path / "final").exists()
    # keep the last two; nothing half-written (temporary folders start with a dot)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-4", "step-6"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    ckpt = tmp_path / "checkpoints" / "step-6"
    assert {p.name for p in ckpt.iterdir()} == {
        "adapter",
        "optimizer.pt",
        "scheduler.pt",
        "rng.pt",
        "trainer_state.json",
    }
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert state["step"] == 6 and state["micro_done"] == 6 and len(state["history"]) == 6


@pytest.mark.parametrize("method", ["lora", "full"])
def test_a_resumed_run_continues_and_matches_an_uninterrupted_one(
    learnable: loading.LoadedModel, tmp_path: Path, method: str
) -> None:
    # 26 steps of 8 rows cross into the second epoch; dropout exercises the RNG state.
    p = params(method=method, max_steps=26, checkpoint_every=5, eval_every=10, lora_dropout=0.1)
    whole = run(learnable, tmp_path / "whole", p)

    first = Recorder(cancel_after=12)
    interrupted = run(learnable, tmp_path / "parts", p, first)
    assert interrupted.status == "cancelled" and interrupted.steps == 12
    second = Recorder()
    resumed = run(learnable, tmp_path / "parts", p, second, resume=True)

    assert resumed.resumed_from_step == 10  # the last checkpoint, not the last step
    assert [s.step for s in second.steps] == list(range(11, 27))
    assert resumed.status == "succeeded" and resumed.steps == 26
    assert [s.step for s in resumed.history] == list(range(1, 27))
    assert [s.tokens for s in resumed.history] == [s.tokens for s in whole.history]
    # CPU kernels are deterministic: the same losses, to the bit
    assert [s.loss for s in resumed.history] == [s.loss for s in whole.history]
    assert [(e.step, e.loss) for e in resumed.evals] == [(e.step, e.loss) for e in whole.evals]
    assert resumed.final_train_loss == whole.final_train_loss
    assert resumed.tokens == whole.tokens


def test_resuming_a_finished_run_returns_its_result_without_training(
    learnable: loading.LoadedModel, runs: dict[str, Any]
) -> None:
    result, _, folder = runs["prompt_tuning"]
    rec = Recorder()
    again = run(
        learnable, folder, params(method="prompt_tuning", num_virtual_tokens=4), rec, resume=True
    )
    assert rec.steps == [] and again == result


def test_resume_refuses_a_checkpoint_written_with_other_parameters(
    learnable: loading.LoadedModel, tmp_path: Path
) -> None:
    run(learnable, tmp_path, params(checkpoint_every=2), Recorder(cancel_after=2))
    with pytest.raises(common.TrainingError, match="other parameters"):
        run(learnable, tmp_path, params(checkpoint_every=2, lora_r=4), resume=True)


def test_resume_without_a_checkpoint_starts_afresh(
    learnable: loading.LoadedModel, tmp_path: Path
) -> None:
    result = run(learnable, tmp_path, params(max_steps=3, eval_rows=0), resume=True)
    assert result.status == "succeeded" and result.resumed_from_step is None
    assert [s.step for s in result.history] == [1, 2, 3]


# --- parameters --------------------------------------------------------------------------


def test_train_params_default_the_learning_rate_by_method() -> None:
    for method, lr in DEFAULT_LEARNING_RATES.items():
        p = TrainParams.model_validate(
            {"model_ref": "m", "dataset_id": 1, "template": TEMPLATE, "method": method}
        )
        assert p.effective_learning_rate == lr
    assert params(learning_rate=0.5).effective_learning_rate == 0.5


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"target_modules": []}, "at least one target module"),
        ({"target_modules": ["q proj"]}, "not one"),
        ({"target_modules": ["q_proj", "q_proj"]}, "listed twice"),
        ({"warmup_steps": 40, "max_steps": 30}, "longer than the run"),
        ({"unknown": 1}, "Extra inputs"),
        ({"lora_dropout": 1.0}, "less than 1"),
    ],
)
def test_train_params_reject_inconsistent_settings(overrides: dict[str, Any], message: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        params(**overrides)


def test_prompt_tuning_needs_no_target_modules() -> None:
    assert params(method="prompt_tuning", target_modules=[]).target_modules == []


@pytest.mark.cuda
def test_on_a_cuda_gpu_lora_trains_with_bf16_autocast(
    learnable: loading.LoadedModel, tmp_path: Path
) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    on_gpu = loading.load(loading.ModelSpec("local", learnable.path), tmp_path, device="cuda")
    result = run(on_gpu, tmp_path / "run", params(method="lora"))
    assert result.status == "succeeded" and result.device.startswith("cuda")
    assert result.precision == ("bf16" if torch.cuda.is_bf16_supported() else "fp32")
    assert result.final_train_loss is not None
    assert result.final_train_loss < 0.7 * result.history[0].loss
    assert result.history[-1].peak_memory_bytes > 0
