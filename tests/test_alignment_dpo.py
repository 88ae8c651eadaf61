"""DPO on the tiny model learns a preference it can see: in every pair both answers are
the same random words followed by the same two tokens, " z q" in one and " q z" in the
other; the chosen one is the order the untrained model likes less (measured first), so
before alignment it ranks the human choice higher on at most half of the pairs. Held-out
preference accuracy (how often the model gives the chosen answer the higher
log-likelihood) must rise, and the run must stop on cancel, resume from its checkpoint,
and refuse too few pairs."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import pytest

from workers.ml import loading
from workers.ml.params import AlignParams
from workers.ml.training import common, dpo, sft

WORDS = [
    "apple",
    "river",
    "stone",
    "cloud",
    "paper",
    "light",
    "green",
    "quick",
    "small",
    "table",
    "window",
    "music",
]


def pairs(n: int, seed: int, chosen: str, rejected: str) -> list[dpo.Pair]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        topic = " ".join(rng.choice(WORDS) for _ in range(3))
        body = " ".join(rng.choice(WORDS) for _ in range(4))
        out.append(
            dpo.Pair(
                prompt=f"Reply to: {topic}\nReply:",
                chosen=f"{body}{chosen}",
                rejected=f"{body}{rejected}",
            )
        )
    return out


@pytest.fixture(scope="module")
def tiny(tiny_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> loading.LoadedModel:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("dpo-model")
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
        bos_token_id=None,
        eos_token_id=0,
        pad_token_id=1,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=None, pad_token_id=1)
    model.save_pretrained(str(folder))
    return loading.load(loading.ModelSpec("local", str(folder)), folder.parent, device="cpu")


@pytest.fixture(scope="module")
def PAIRS(tiny: loading.LoadedModel) -> list[dpo.Pair]:
    """60 pairs whose chosen ending is the one the untrained model prefers less."""
    one_way = pairs(60, seed=1, chosen=" z q", rejected=" q z")
    prior = dpo.preference_accuracy(tiny.model, tiny.tokenizer, one_way, device="cpu")
    if prior.accuracy <= 0.5:
        return one_way
    return pairs(60, seed=1, chosen=" q z", rejected=" z q")


def params(**overrides: Any) -> AlignParams:
    values: dict[str, Any] = {
        "model_ref": "tiny",
        "preference_set_id": 1,
        "beta": 0.5,
        "learning_rate": 5e-3,
        "max_steps": 24,
        "batch_size": 8,
        "max_length": 64,
        "heldout_fraction": 0.25,
        "checkpoint_every": 8,
    }
    values.update(overrides)
    return AlignParams(**values)


def test_dpo_raises_the_held_out_preference_accuracy(
    tiny: loading.LoadedModel, tmp_path: Path, PAIRS: list[dpo.Pair]
) -> None:
    steps: list[common.StepLog] = []
    scores: dict[str, dpo.PreferenceScore] = {}

    result = dpo.align(
        tiny,
        params(),
        PAIRS,
        out_dir=tmp_path,
        on_step=steps.append,
        on_score=lambda when, s: scores.__setitem__(when, s),
    )

    assert result.status == "succeeded" and result.steps == 24
    assert (result.train_pairs, result.heldout_pairs) == (45, 15)
    assert result.before is not None and result.after is not None
    assert scores == {"before": result.before, "after": result.after}
    assert result.before.accuracy <= 0.6  # about the prior's half or less
    assert result.after.accuracy >= result.before.accuracy + 0.3
    assert result.after.accuracy >= 0.9
    assert result.after.margin > result.before.margin
    assert [s.step for s in steps] == list(range(1, 25))
    assert all(s.precision == "fp32" and s.device == "cpu" for s in steps)
    # LoRA only: a small share of the model trains, and the cached model is untouched.
    assert 0 < result.trainable_params < sum(p.numel() for p in tiny.model.parameters()) // 5
    again = dpo.preference_accuracy(tiny.model, tiny.tokenizer, PAIRS[:5], device="cpu")
    assert again.pairs == 5
    final = tmp_path / "final"
    names = {f["path"] for f in sft.artifact_files(final)}
    assert {"adapter_model.safetensors", "adapter_config.json", dpo.CONFIG_NAME} <= names
    config = json.loads((final / dpo.CONFIG_NAME).read_text())
    assert config["params"]["beta"] == 0.5
    assert config["result"]["after"]["accuracy"] == result.after.accuracy
    assert not (tmp_path / "checkpoints").exists()
    # The aligned adapter loads as a candidate (merged on load) and keeps its preference.
    aligned = loading.load(loading.ModelSpec("local", str(final)), tmp_path, device="cpu")
    reloaded = dpo.preference_accuracy(
        aligned.model,
        aligned.tokenizer,
        dpo.split_pairs(PAIRS, 0.25, 0)[1],
        device="cpu",
        max_len=64,
    )
    assert reloaded.accuracy == pytest.approx(result.after.accuracy)


def test_cancel_stops_within_a_step_and_resume_continues_from_the_checkpoint(
    tiny: loading.LoadedModel, tmp_path: Path, PAIRS: list[dpo.Pair]
) -> None:
    seen: list[common.StepLog] = []

    cancelled = dpo.align(
        tiny,
        params(max_steps=20, checkpoint_every=5),
        PAIRS,
        out_dir=tmp_path,
        on_step=seen.append,
        should_cancel=lambda: len(seen) >= 7,
    )

    # Cancel is asked for once step 7 is logged, i.e. during step 8: the run stops as soon
    # as step 8 ends.
    assert cancelled.status == "cancelled"
    assert cancelled.steps == 8
    assert not (tmp_path / "final").exists()
    assert dpo.latest_checkpoint(tmp_path) is not None
    assert dpo.latest_checkpoint(tmp_path).name == "checkpoint-5"  # type: ignore[union-attr]

    resumed_steps: list[common.StepLog] = []
    resumed = dpo.align(
        tiny,
        params(max_steps=20, checkpoint_every=5),
        PAIRS,
        out_dir=tmp_path,
        on_step=resumed_steps.append,
        resume=True,
    )

    assert resumed.status == "succeeded" and resumed.steps == 20
    assert resumed.resumed_from_step == 5
    assert [s.step for s in resumed_steps] == list(range(6, 21))  # step 6, not 1 or 9
    assert resumed.before == cancelled.before


def test_too_few_pairs_are_refused_with_the_reason(
    tiny: loading.LoadedModel, tmp_path: Path, PAIRS: list[dpo.Pair]
) -> None:
    with pytest.raises(dpo.AlignmentError, match="at least 2 training pairs"):
        dpo.align(tiny, params(), PAIRS[:2], out_dir=tmp_path)


def test_held_out_pairs_are_a_seeded_split(PAIRS: list[dpo.Pair]) -> None:
    kept, held = dpo.split_pairs(PAIRS, 0.2, seed=3)
    assert (len(kept), len(held)) == (48, 12)
    assert dpo.split_pairs(PAIRS, 0.2, seed=3) == (kept, held)
    assert set(kept).isdisjoint(held)
    assert dpo.split_pairs(PAIRS[:3], 0.01, seed=0)[1]  # at least one held out
