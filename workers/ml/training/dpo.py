"""Alignment with human feedback: DPO (trl) with LoRA on top of a candidate model.

- **Data**: preference pairs (prompt, chosen, rejected), the prompt being the exact text the
  model saw when it wrote the completions. A seeded share of the pairs is held out.
- **Preference accuracy**: on held-out pairs, how often the model gives the human-chosen
  completion a higher log-likelihood (the sum of its tokens' log-probabilities after the
  prompt, which is the quantity DPO moves) than the rejected one. Measured on the starting
  model and on the aligned one, so the effect of alignment is a before/after figure.
- **Training**: `trl.DPOTrainer` on a float32 copy of the candidate, with LoRA adapters, so
  the reference model is the same weights with the adapters switched off (no second copy
  in memory). It reports to the same callbacks as fine-tuning (`common.StepLog`), so the
  fine-tuning dashboard, cancel and resume serve alignment too:
  - cancel is checked after every optimizer step and every micro-batch;
  - checkpoints are trl/Trainer checkpoints (adapter, optimizer, scheduler, RNG state) every
    `checkpoint_every` steps, and `resume` continues from the latest complete one;
  - the final adapter goes to `out_dir/final/` with `alignment_config.json`, written to a
    temporary folder and renamed, so a half-written final folder never exists.
"""

from __future__ import annotations

import copy
import json
import logging
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers.ml.errors import UserFacingError
from workers.ml.loading import LoadedModel
from workers.ml.params import AlignParams, heldout_count
from workers.ml.training import adapters, common

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from workers.ml.training.distributed import Group

CONFIG_NAME = "alignment_config.json"
_COMPLETE = "trainer_state.json"  # written last into a Trainer checkpoint


class AlignmentError(UserFacingError):
    pass


@dataclass(frozen=True)
class Pair:
    prompt: str
    chosen: str
    rejected: str


@dataclass(frozen=True)
class PreferenceScore:
    accuracy: float  # share of pairs where log p(chosen) > log p(rejected)
    margin: float  # mean of log p(chosen) - log p(rejected)
    pairs: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# Below this many held-out pairs the preference accuracy says nothing: one pair moves it by
# more than 5 points and the 95% interval spans most of 0-100%.
MIN_MEANINGFUL_PAIRS = 20


def heldout_caveat(pairs: int, accuracy: float) -> str:
    """A sentence on what a held-out preference accuracy over `pairs` pairs can mean
    ("" when the sample is big enough): one pair's weight and the 95% Wilson interval."""
    if pairs <= 0 or pairs >= MIN_MEANINGFUL_PAIRS:
        return ""
    z = 1.96
    centre = (accuracy + z * z / (2 * pairs)) / (1 + z * z / pairs)
    half = (z / (1 + z * z / pairs)) * (
        (accuracy * (1 - accuracy) / pairs + z * z / (4 * pairs * pairs)) ** 0.5
    )
    low, high = max(0.0, centre - half), min(1.0, centre + half)
    return (
        f"Only {pairs} held-out pair{'s' if pairs != 1 else ''}: too small a sample to mean "
        f"anything. One pair moves the accuracy by {100 / pairs:.0f} points, and the 95% "
        f"interval runs from {low:.0%} to {high:.0%}. Hold out more pairs (at least "
        f"{MIN_MEANINGFUL_PAIRS}) or collect more ratings."
    )


@dataclass
class AlignResult:
    status: str  # "succeeded" | "cancelled"
    steps: int
    total_steps: int
    device: str
    precision: str
    final_train_loss: float | None
    before: PreferenceScore | None
    after: PreferenceScore | None
    train_pairs: int
    heldout_pairs: int
    trainable_params: int
    resumed_from_step: int | None
    train_seconds: float
    final_dir: str | None
    history: list[common.StepLog] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["history"] = [s.as_dict() for s in self.history]
        return data


def split_pairs(
    pairs: Sequence[Pair], heldout_fraction: float, seed: int
) -> tuple[list[Pair], list[Pair]]:
    """(train, held out): a seeded shuffle, at least one pair on each side when possible."""
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    n_heldout = heldout_count(len(pairs), heldout_fraction)
    held = sorted(order[:n_heldout])
    kept = sorted(order[n_heldout:])
    return [pairs[i] for i in kept], [pairs[i] for i in held]


def _completion_logprobs(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    completions: Sequence[str],
    *,
    device: str,
    max_len: int,
    batch_size: int,
) -> list[float]:
    """Sum of log-probabilities of each completion's tokens (end token included) after its
    prompt; a long prompt loses its start so that the completion fits."""
    import torch

    rows = [{"input": p, "target": c} for p, c in zip(prompts, completions, strict=True)]
    data = common.prepare_examples(tokenizer, rows, render=lambda text: text, max_seq_len=max_len)
    by_row = {e.row: e for e in data.examples}
    pad_id = int(
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )
    out = [float("-inf")] * len(rows)
    examples = sorted(by_row.values(), key=lambda e: -e.length)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(examples), batch_size):
                chunk = examples[start : start + batch_size]
                batch = common.collate(chunk, pad_id, device)
                logits = model(
                    input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
                ).logits.float()
                labels = batch["labels"][:, 1:]
                logp = torch.log_softmax(logits[:, :-1], dim=-1)
                mask = labels != -100
                picked = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
                sums = (picked * mask).sum(dim=-1)
                for e, value in zip(chunk, sums.tolist(), strict=True):
                    out[e.row] = float(value)
    finally:
        model.train(was_training)
    return out


def preference_accuracy(
    model: Any,
    tokenizer: Any,
    pairs: Sequence[Pair],
    *,
    device: str,
    max_len: int = 512,
    batch_size: int = 8,
) -> PreferenceScore:
    """How often `model` ranks the chosen completion above the rejected one (log-likelihood)."""
    if not pairs:
        return PreferenceScore(accuracy=0.0, margin=0.0, pairs=0)
    prompts = [p.prompt for p in pairs]
    chosen = _completion_logprobs(
        model,
        tokenizer,
        prompts,
        [p.chosen for p in pairs],
        device=device,
        max_len=max_len,
        batch_size=batch_size,
    )
    rejected = _completion_logprobs(
        model,
        tokenizer,
        prompts,
        [p.rejected for p in pairs],
        device=device,
        max_len=max_len,
        batch_size=batch_size,
    )
    wins = sum(1 for c, r in zip(chosen, rejected, strict=True) if c > r)
    margins = [c - r for c, r in zip(chosen, rejected, strict=True)]
    return PreferenceScore(
        accuracy=round(wins / len(pairs), 6),
        margin=round(sum(margins) / len(margins), 6),
        pairs=len(pairs),
    )


def trainable_copy(loaded: LoadedModel) -> Any:
    """A float32 copy of the candidate to train, apart from the cached inference model."""
    import torch

    if hasattr(loaded.model, "peft_config"):
        raise AlignmentError(
            "A prompt-tuned candidate cannot be aligned: start from the base model, a full "
            "fine-tune or a LoRA candidate."
        )
    model = copy.deepcopy(loaded.model).to(torch.float32)
    quantization = getattr(model.config, "quantization_config", None) or {}
    method = (
        quantization.get("quant_method")
        if isinstance(quantization, dict)
        else getattr(quantization, "quant_method", None)
    )
    if str(getattr(method, "value", method)).lower() == "gguf":
        # The bundled model was converted from GGUF to plain float32 weights, but the
        # loaded model still names the GGUF quantizer, and Trainer refuses to train it.
        del model.config.quantization_config
        model.hf_quantizer = None
        if "is_quantized" in vars(model):
            model.is_quantized = False
    model.config.use_cache = False
    model.train()
    return model


def _complete_checkpoints(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    found = [p for p in folder.glob("checkpoint-*") if (p / _COMPLETE).is_file()]
    return sorted(found, key=lambda p: int(p.name.split("-", 1)[1]))


def latest_checkpoint(out_dir: Path) -> Path | None:
    found = _complete_checkpoints(Path(out_dir) / "checkpoints")
    return found[-1] if found else None


def _finished(out_dir: Path) -> AlignResult | None:
    config = out_dir / "final" / CONFIG_NAME
    if not config.is_file():
        return None
    return result_from_dict(json.loads(config.read_text(encoding="utf-8"))["result"])


def result_from_dict(values: dict[str, Any]) -> AlignResult:
    data = dict(values)
    data["history"] = [common.StepLog(**s) for s in data.get("history", [])]
    for key in ("before", "after"):
        data[key] = PreferenceScore(**data[key]) if data.get(key) else None
    return AlignResult(**data)


def align(
    loaded: LoadedModel,
    params: AlignParams,
    pairs: Sequence[Pair],
    *,
    out_dir: Path,
    on_step: Callable[[common.StepLog], None] | None = None,
    on_score: Callable[[str, PreferenceScore], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    resume: bool = False,
    group: Group | None = None,
) -> AlignResult:
    """DPO with LoRA on `loaded`; see the module notes. `on_score("before" | "after", s)`
    reports the held-out preference accuracy of the starting and the aligned model.

    With `group` (torchrun launched this process, see `distributed`) the Trainer runs
    DDP: each process takes batch_size / N pairs of every micro-batch (the Trainer's
    sampler deals consecutive per-process batches out in turn, so a step sees the pairs
    one process would), the processes agree on cancel, and only rank 0 writes."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, TaskType
    from transformers import PrinterCallback, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    out_dir = Path(out_dir)
    if resume and (done := _finished(out_dir)) is not None:
        return done
    train_pairs, heldout = split_pairs(pairs, params.heldout_fraction, params.seed)
    if len(train_pairs) < 2:
        raise AlignmentError(
            f"Alignment needs at least 2 training pairs; this set leaves {len(train_pairs)} "
            "after holding out pairs for the before/after check."
        )
    device, tokenizer = loaded.device, loaded.tokenizer
    adapters.reset_peak_memory(device)  # this run's peak, not an earlier job's
    if tokenizer.pad_token_id is None:
        tokenizer = copy.copy(tokenizer)
        tokenizer.pad_token = tokenizer.eos_token
    checkpoint = latest_checkpoint(out_dir) if resume else None
    main = group is None or group.is_main
    if not resume and (out_dir / "checkpoints").exists() and main:
        shutil.rmtree(out_dir / "checkpoints")  # a fresh run: earlier checkpoints are stale
    started = time.monotonic()
    before_path = out_dir / "before.json"
    if checkpoint is not None and before_path.is_file():
        before = PreferenceScore(**json.loads(before_path.read_text()))
    else:
        before = preference_accuracy(
            loaded.model, tokenizer, heldout, device=device, max_len=params.max_length
        )
        if main:
            out_dir.mkdir(parents=True, exist_ok=True)
            before_path.write_text(json.dumps(before.as_dict()))
    if on_score:
        on_score("before", before)

    torch.manual_seed(params.seed)
    model = trainable_copy(loaded)
    precision = adapters.precision(device)
    history: list[common.StepLog] = []
    state_box: dict[str, Any] = {"cancelled": False, "t0": time.monotonic(), "steps": 0}
    first_step = int(checkpoint.name.split("-", 1)[1]) if checkpoint else 0

    class Bridge(TrainerCallback):  # type: ignore[misc]
        def _cancel(self, control: Any) -> None:
            asked = should_cancel is not None and should_cancel()
            if group is not None:  # every process stops at the same micro-batch
                asked = group.any(asked)
            if asked:
                state_box["cancelled"] = True
                control.should_training_stop = True
                control.should_save = False

        def on_substep_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self._cancel(control)

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self._cancel(control)

        def on_log(
            self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any
        ) -> None:
            if not logs or "loss" not in logs:
                return
            done = state.global_step - first_step
            wall = time.monotonic() - state_box["t0"]
            tokens = int(logs.get("num_tokens", 0))
            log = common.StepLog(
                step=state.global_step,
                total_steps=state.max_steps,
                epoch=round(float(state.epoch or 0.0), 4),
                loss=round(float(logs["loss"]), 6),
                learning_rate=float(logs.get("learning_rate", 0.0)),
                grad_norm=float(logs.get("grad_norm", 0.0) or 0.0),
                tokens=tokens,
                target_tokens=0,
                tokens_per_s=round(tokens / wall, 2) if wall > 0 and tokens else 0.0,
                elapsed_s=round(time.monotonic() - started, 3),
                eta_s=round((state.max_steps - state.global_step) * wall / max(done, 1), 1),
                device=device,
                peak_memory_bytes=adapters.peak_memory_bytes(device),
                precision=precision,
            )
            history.append(log)
            if on_step:
                on_step(log)

    config = DPOConfig(
        output_dir=str(out_dir / "checkpoints"),
        beta=params.beta,
        learning_rate=params.learning_rate,
        lr_scheduler_type=params.lr_scheduler,
        warmup_steps=params.warmup_steps,
        max_steps=params.max_steps,
        per_device_train_batch_size=-(-params.batch_size // group.world)
        if group
        else params.batch_size,
        gradient_accumulation_steps=params.grad_accum,
        max_length=params.max_length,
        seed=params.seed,
        data_seed=params.seed,
        logging_steps=1,
        save_strategy="steps" if params.checkpoint_every else "no",
        save_steps=params.checkpoint_every or 500,
        save_total_limit=common.KEEP_CHECKPOINTS,
        report_to=[],
        disable_tqdm=True,
        use_cpu=not device.startswith("cuda"),
        bf16=precision == "bf16",
        dataloader_num_workers=0,  # Celery's prefork children cannot start processes
        dataset_num_proc=None,
        remove_unused_columns=False,
    )
    peft_config = LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=params.lora_r,
        lora_alpha=params.lora_alpha,
        lora_dropout=params.lora_dropout,
        target_modules=list(params.target_modules),
    )
    dataset = Dataset.from_list([asdict(p) for p in train_pairs])
    trainer = DPOTrainer(
        model=model,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[Bridge()],
    )
    wrapped: Any = trainer.model
    trainer.remove_callback(PrinterCallback)  # progress goes to on_step, not stdout
    trainable = sum(int(p.numel()) for p in wrapped.parameters() if p.requires_grad)
    state_box["t0"] = time.monotonic()
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    train_seconds = round(time.monotonic() - state_box["t0"], 3)
    steps = int(trainer.state.global_step)

    def result(status: str, after: PreferenceScore | None, final: Path | None) -> AlignResult:
        tail = [s.loss for s in history[-common.FINAL_LOSS_WINDOW :]]
        return AlignResult(
            status=status,
            steps=steps,
            total_steps=params.max_steps,
            device=device,
            precision=precision,
            final_train_loss=round(sum(tail) / len(tail), 6) if tail else None,
            before=before,
            after=after,
            train_pairs=len(train_pairs),
            heldout_pairs=len(heldout),
            trainable_params=int(trainable),
            resumed_from_step=first_step or None,
            train_seconds=train_seconds,
            final_dir=str(final) if final else None,
            history=history,
        )

    if state_box["cancelled"]:
        return result("cancelled", None, None)
    aligned: Any = trainer.model
    after = preference_accuracy(
        aligned, tokenizer, heldout, device=device, max_len=params.max_length
    )
    if on_score:
        on_score("after", after)
    if not main:
        return result("succeeded", after, None)
    final = out_dir / "final"
    done = result("succeeded", after, final)
    with common.atomic_dir(final) as tmp:
        aligned.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        (tmp / CONFIG_NAME).write_text(
            json.dumps(
                {"params": params.model_dump(), "result": done.as_dict()}, indent=2, default=str
            ),
            encoding="utf-8",
        )
    shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    return done
