"""Fine-tuning: full fine-tuning, LoRA and prompt tuning, with a small training loop of its own.

Examples, batches, records and checkpoints are in `common`, the trainable model and its
loss in `adapters` (each with its design notes). Design notes of the loop:

- Loss. The loss of an optimizer step is the mean over all its target tokens (summed over
  its micro-batches, divided once), so gradient accumulation does not weigh short rows more.
- Speed figures count real tokens: prompt, target and end token, never padding and never
  prompt tuning's virtual tokens.
- Cancel is asked before every micro-batch; a cancelled run applies no partial step and
  writes nothing more. Checkpoints and the final folder are written into temporary
  folders and renamed into place, so a reader or a resumed run never sees half of one.
- Resume regenerates the data order from the seed and continues from the micro-batch
  after the last one consumed, with the model, optimizer, scheduler and RNG states of the
  checkpoint: on CPU a resumed run reproduces an uninterrupted one exactly.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers.ml.loading import LoadedModel
from workers.ml.params import TrainParams
from workers.ml.training.adapters import (
    _autocast,
    _scheduler,
    build_training_model,
    peak_memory_bytes,
    precision,
    reset_peak_memory,
    target_loss,
)
from workers.ml.training.common import (
    FINAL_LOSS_WINDOW,
    STATE_NAME,
    EvalLog,
    Example,
    Render,
    StepLog,
    TrainingError,
    TrainResult,
    _BatchStream,
    _fingerprint,
    _load_checkpoint,
    _save_checkpoint,
    _seed_everything,
    atomic_dir,
    checkpoints,
    collate,
    prepare_examples,
)

MAX_GRAD_NORM = 1.0  # as transformers.Trainer's default
CONFIG_NAME = "training_config.json"

if TYPE_CHECKING:
    from workers.ml.training.distributed import Group

CancelFn = Callable[[], bool]


# --- final output ------------------------------------------------------------------------


def artifact_files(final_dir: Path) -> list[dict[str, Any]]:
    """Every file of a final folder: path relative to it, size in bytes, sha256."""
    files = []
    for path in sorted(p for p in Path(final_dir).rglob("*") if p.is_file()):
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        files.append(
            {
                "path": path.relative_to(final_dir).as_posix(),
                "size": path.stat().st_size,
                "sha256": digest.hexdigest(),
            }
        )
    return files


def _finished(out_dir: Path) -> TrainResult | None:
    config = out_dir / "final" / CONFIG_NAME
    if not config.is_file():
        return None
    return TrainResult.from_dict(json.loads(config.read_text(encoding="utf-8"))["result"])


def _versions() -> dict[str, str]:
    import peft
    import torch
    import transformers

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
    }


# --- the loop ----------------------------------------------------------------------------


def _mean_loss(
    model: Any,
    batches: list[list[Example]],
    pad_id: int,
    device: str,
    nv: int,
    group: Group | None = None,
) -> tuple[float, int]:
    """Mean target-token loss over `batches`; with a process group each rank takes its
    share of every batch and the sums are added up across ranks."""
    import torch

    model.eval()
    total, count = 0.0, 0
    try:
        with torch.inference_mode(), _autocast(device):
            for batch in batches:
                rows = group.shard(batch) if group else batch
                if rows:
                    total += float(target_loss(model, collate(rows, pad_id, device), nv))
                    count += sum(e.n_target_tokens for e in rows)
    finally:
        model.train()
    if group:
        total, summed = group.total(total, count)
        count = int(summed)
    return (total / count if count else float("nan")), count


def train(
    loaded: LoadedModel,
    params: TrainParams,
    train_rows: Sequence[dict[str, Any]],
    eval_rows: Sequence[dict[str, Any]],
    *,
    out_dir: Path,
    render: Render,
    on_step: Callable[[StepLog], None] | None = None,
    on_eval: Callable[[EvalLog], None] | None = None,
    should_cancel: CancelFn | None = None,
    resume: bool = False,
    on_checkpoint: Callable[[int, Path], None] | None = None,
    group: Group | None = None,
) -> TrainResult:
    """Fine-tune `loaded`'s base model on `train_rows` and write `out_dir/final/`.

    Rows are {"input", "target"} dicts; `render(input)` is the prompt text. `on_step` is
    called after every optimizer step, `on_eval` after every evaluation (at step 0, every
    `eval_every` steps and at the end, on the first `eval_rows` evaluation rows).
    `should_cancel` is asked before every micro-batch; when it answers True the run stops
    there and returns status "cancelled" without writing a final folder. With `resume`,
    training continues from the latest complete checkpoint in `out_dir` (or starts afresh
    when there is none); a run that already finished returns its recorded result.

    With `group` (a torch.distributed process group, see `distributed`), this process
    trains on its share of every micro-batch and gradients are summed across processes
    each step; only rank 0 writes checkpoints and the final folder, and only its result
    names the final folder. `on_checkpoint(step, folder)` follows every checkpoint saved.
    """
    import torch

    out_dir = Path(out_dir)
    if resume and (done := _finished(out_dir)) is not None:
        return done
    device, tokenizer = loaded.device, loaded.tokenizer
    pad_id = int(
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )
    data = prepare_examples(tokenizer, train_rows, render=render, max_seq_len=params.max_seq_len)
    held_out = prepare_examples(
        tokenizer,
        list(eval_rows)[: params.eval_rows],
        render=render,
        max_seq_len=params.max_seq_len,
    )
    examples = data.examples
    if not examples:
        raise TrainingError(
            f"No training row fits in {params.max_seq_len} tokens; raise the maximum "
            "sequence length or shorten the targets."
        )
    eval_sorted = sorted(held_out.examples, key=lambda e: -e.length)
    eval_batches = [
        eval_sorted[i : i + params.batch_size]
        for i in range(0, len(eval_sorted), params.batch_size)
    ]
    lengths = [e.length for e in examples]
    stream = _BatchStream(lengths, params.batch_size, params.seed)
    # With max_steps every step takes grad_accum micro-batches; with epochs the run takes
    # the epochs' micro-batches and its last step may take fewer.
    if params.max_steps:
        total_steps, planned_micro = params.max_steps, params.max_steps * params.grad_accum
    else:
        planned_micro = max(1, math.ceil(params.epochs * stream.per_epoch))
        total_steps = math.ceil(planned_micro / params.grad_accum)
    fingerprint = _fingerprint(params, examples)

    _seed_everything(params.seed)
    model = build_training_model(loaded, params)
    nv = params.num_virtual_tokens if params.method == "prompt_tuning" else 0
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=params.effective_learning_rate, weight_decay=0.0)
    scheduler = _scheduler(optimizer, params, total_steps)
    reset_peak_memory(device)  # this run's peak, not the worker process's lifetime one

    state: dict[str, Any] = {
        "step": 0,
        "micro_done": 0,
        "tokens": 0,
        "target_tokens": 0,
        "train_seconds": 0.0,
        "elapsed_s": 0.0,
        "history": [],
        "evals": [],
    }
    resumed_from: int | None = None
    latest = checkpoints(out_dir)[-1:] if resume else []
    if latest:
        saved = json.loads((latest[0] / STATE_NAME).read_text(encoding="utf-8"))
        if saved.get("fingerprint") != fingerprint:
            raise TrainingError(
                f"The checkpoint in {latest[0]} was written with other parameters or other "
                "data; start a new run instead of resuming."
            )
        state = _load_checkpoint(latest[0], model, optimizer, scheduler, device)
        resumed_from = int(state["step"])
    elif (out_dir / "checkpoints").exists() and (group is None or group.is_main):
        shutil.rmtree(out_dir / "checkpoints")  # a fresh run: earlier checkpoints are stale
    history = [StepLog(**s) for s in state["history"]]
    evals = [EvalLog(**e) for e in state["evals"]]

    def epoch_now() -> float:
        return round(state["micro_done"] / stream.per_epoch, 4)

    def evaluate() -> None:
        began = time.monotonic()
        loss, count = _mean_loss(model, eval_batches, pad_id, device, nv, group)
        log = EvalLog(
            state["step"],
            epoch_now(),
            loss,
            count,
            len(held_out.examples),
            round(time.monotonic() - began, 3),
        )
        evals.append(log)
        if on_eval:
            on_eval(log)

    def result(status: str, final_dir: Path | None) -> TrainResult:
        tail = [s.loss for s in history[-FINAL_LOSS_WINDOW:]]
        return TrainResult(
            status=status,
            method=params.method,
            device=device,
            precision=precision(device),
            steps=state["step"],
            total_steps=total_steps,
            epoch=epoch_now(),
            final_train_loss=sum(tail) / len(tail) if tail else None,
            final_eval_loss=evals[-1].loss if evals and evals[-1].step == state["step"] else None,
            tokens=state["tokens"],
            target_tokens=state["target_tokens"],
            tokens_per_s=round(state["tokens"] / state["train_seconds"], 2)
            if state["train_seconds"]
            else 0.0,
            train_seconds=round(state["train_seconds"], 3),
            elapsed_s=round(state["elapsed_s"], 3),
            trainable_params=sum(p.numel() for p in trainable),
            total_params=sum(p.numel() for p in model.parameters()),
            n_train_examples=len(examples),
            n_eval_examples=len(held_out.examples),
            dropped_rows=len(data.dropped_rows),
            truncated_rows=data.truncated,
            resumed_from_step=resumed_from,
            final_dir=str(final_dir) if final_dir else None,
            history=history,
            evals=evals,
        )

    if eval_batches and state["step"] == 0 and params.eval_every > 0:
        evaluate()
    segment_start = time.monotonic()
    elapsed_before = state["elapsed_s"]
    segment_train_s, segment_tokens, segment_steps = 0.0, 0, 0

    def cancelled() -> bool:
        asked = bool(should_cancel and should_cancel())
        return group.any(asked) if group else asked  # every rank stops at the same point

    while state["step"] < total_steps:
        micro = [
            [examples[i] for i in stream(state["micro_done"] + k)]
            for k in range(min(params.grad_accum, planned_micro - state["micro_done"]))
        ]
        n_target = sum(e.n_target_tokens for rows in micro for e in rows)
        n_tokens = sum(e.length for rows in micro for e in rows)
        began = time.monotonic()
        lr = float(scheduler.get_last_lr()[0])
        optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), device=device)
        for batch in micro:
            if cancelled():
                state["elapsed_s"] = elapsed_before + time.monotonic() - segment_start
                return result("cancelled", None)
            rows = group.shard(batch) if group else batch
            if not rows:  # a short last batch: this process has no share of it
                continue
            with _autocast(device):
                loss = target_loss(model, collate(rows, pad_id, device), nv)
            (loss / n_target).backward()
            loss_sum += loss.detach()
        if group:
            group.sum_grads(trainable)
            loss_sum.fill_(group.total(float(loss_sum))[0])
        grad_norm = float(torch.nn.utils.clip_grad_norm_(trainable, MAX_GRAD_NORM))
        optimizer.step()
        scheduler.step()
        step_loss = float(loss_sum) / n_target  # syncs with the device, so timing is real
        step_s = time.monotonic() - began

        state["step"] += 1
        state["micro_done"] += len(micro)
        state["tokens"] += n_tokens
        state["target_tokens"] += n_target
        state["train_seconds"] += step_s
        segment_train_s += step_s
        segment_tokens += n_tokens
        segment_steps += 1
        wall = time.monotonic() - segment_start
        state["elapsed_s"] = elapsed_before + wall
        log = StepLog(
            step=state["step"],
            total_steps=total_steps,
            epoch=epoch_now(),
            loss=step_loss,
            learning_rate=lr,
            grad_norm=grad_norm,
            tokens=n_tokens,
            target_tokens=n_target,
            tokens_per_s=round(segment_tokens / segment_train_s, 2),
            elapsed_s=round(state["elapsed_s"], 3),
            eta_s=round((total_steps - state["step"]) * wall / segment_steps, 1),
            device=device,
            peak_memory_bytes=peak_memory_bytes(device),
            precision=precision(device),
        )
        history.append(log)
        if on_step:
            on_step(log)
        last = state["step"] == total_steps
        if eval_batches and (
            last or (params.eval_every and state["step"] % params.eval_every == 0)
        ):
            evaluate()
        if params.checkpoint_every and state["step"] % params.checkpoint_every == 0:
            state["history"] = [s.as_dict() for s in history]
            state["evals"] = [e.as_dict() for e in evals]
            state["fingerprint"] = fingerprint
            if group is None or group.is_main:
                saved_to = _save_checkpoint(
                    out_dir, state["step"], model, optimizer, scheduler, state
                )
                if on_checkpoint:
                    on_checkpoint(state["step"], saved_to)

    state["elapsed_s"] = elapsed_before + time.monotonic() - segment_start
    if group is not None and not group.is_main:
        return result("succeeded", None)
    final_dir = out_dir / "final"
    outcome = result("succeeded", final_dir)
    config = {
        "params": params.model_dump(mode="json"),
        "template": params.template.model_dump(mode="json"),
        "base_model": {"ref": params.model_ref, "path": loaded.path},
        "learning_rate": params.effective_learning_rate,
        "final_train_loss": outcome.final_train_loss,
        "final_eval_loss": outcome.final_eval_loss,
        "steps": outcome.steps,
        "tokens_per_s": outcome.tokens_per_s,
        "versions": _versions(),
        "result": outcome.as_dict(),
    }
    with atomic_dir(final_dir) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2), encoding="utf-8")
    # The final folder holds everything a later run or an export needs; checkpoints (for
    # full fine-tuning, weights plus two optimizer moments each) would only fill the disk.
    shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    return outcome
