"""The prompt-trial runner: batched generation over built prompts, scored per example.

Rows are sorted by prompt length (longest first, so a batch that does not fit in memory
shows up at once) and cut into batches sized to memory, so little compute goes to
padding. After each batch the caller gets that batch's outcomes and the running totals;
cancellation is checked during generation and stops within the batch in flight, keeping
every batch already done. A row that fails is recorded as failed; the others go on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from workers.ml.errors import JobInterrupted
from workers.ml.generation.stream import BatchOutput, CancelFn, generate_batch
from workers.ml.loading import LoadedModel
from workers.ml.params import GenerationSettings
from workers.ml.prompts import BuiltPrompt
from workers.ml.scoring import metrics

logger = logging.getLogger(__name__)

MB = 2**20
CPU_BATCH_BUDGET = 1024 * MB
CPU_MAX_BATCH = 16
GPU_MAX_BATCH = 64


@dataclass
class RowOutcome:
    index: int
    status: str  # "done" | "failed"
    output: str = ""
    output_tokens: int = 0
    finish_reason: str = ""
    scores: dict[str, float] = field(default_factory=dict)
    error: str = ""


@dataclass
class TrialStats:
    rows_total: int
    rows_done: int = 0
    rows_failed: int = 0
    rows_skipped: int = 0
    output_tokens: int = 0
    seconds: float = 0.0  # inside generate(), all batches
    prefill_seconds: float = 0.0  # of `seconds`: until each batch's first new token
    wall_seconds: float = 0.0  # from the first batch to the last, scoring included
    batch_size: int = 0
    batches: int = 0
    cancelled: bool = False
    scores: dict[str, float] = field(default_factory=dict)

    @property
    def tokens_per_second(self) -> float:
        """Generated tokens (every row, end token included) per second of generation."""
        return round(self.output_tokens / self.seconds, 2) if self.seconds > 0 else 0.0

    @property
    def decode_tokens_per_second(self) -> float:
        """Generated tokens per second once the prompts are read (prefill left out)."""
        decode = self.seconds - self.prefill_seconds
        return round(self.output_tokens / decode, 2) if decode > 0 else 0.0

    @property
    def rows_per_second(self) -> float:
        """Rows answered per second of wall time."""
        return round(self.rows_done / self.wall_seconds, 3) if self.wall_seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "tokens_per_second": self.tokens_per_second,
            "decode_tokens_per_second": self.decode_tokens_per_second,
            "rows_per_second": self.rows_per_second,
            "mean_output_tokens": round(self.output_tokens / self.rows_done, 1)
            if self.rows_done
            else 0.0,
        }


def _dtype_bytes(model: Any) -> int:
    try:
        return int(next(model.parameters()).element_size())
    except StopIteration:
        return 4


def row_bytes(config: Any, prompt_tokens: int, max_new_tokens: int, dtype_bytes: int) -> int:
    """Peak memory one row of a batch adds while generating: its KV cache at full length,
    the prefill activations (hidden states, MLP intermediates, attention scores of one
    layer at a time) and the last position's logits with the sampling copies."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    layers = int(text.num_hidden_layers)
    heads = int(text.num_attention_heads)
    kv_heads = int(getattr(text, "num_key_value_heads", None) or heads)
    hidden = int(text.hidden_size)
    head_dim = int(getattr(text, "head_dim", None) or hidden // heads)
    intermediate = int(getattr(text, "intermediate_size", None) or 4 * hidden)
    vocab = int(text.vocab_size)
    length = prompt_tokens + max_new_tokens
    kv_cache = 2 * layers * kv_heads * head_dim * length * dtype_bytes
    prefill = prompt_tokens * (4 * hidden + 3 * intermediate) * dtype_bytes
    scores = heads * prompt_tokens * prompt_tokens * dtype_bytes
    logits = 3 * vocab * 4
    return kv_cache + prefill + scores + logits


def batch_size_for(
    loaded: LoadedModel,
    longest_prompt: int,
    max_new_tokens: int,
    *,
    budget_bytes: int | None = None,
) -> int:
    """The largest batch whose generation memory fits the budget: half the free device
    memory on CUDA, CPU_BATCH_BUDGET on CPU; capped, since beyond the cap a CPU stops
    gaining throughput."""
    cap = CPU_MAX_BATCH
    if budget_bytes is None:
        budget_bytes = CPU_BATCH_BUDGET
        if loaded.device.startswith("cuda"):
            import torch

            free, _ = torch.cuda.mem_get_info()
            budget_bytes, cap = free // 2, GPU_MAX_BATCH
    per_row = row_bytes(
        loaded.model.config, longest_prompt, max_new_tokens, _dtype_bytes(loaded.model)
    )
    return max(1, min(cap, budget_bytes // max(per_row, 1)))


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or "out of memory" in str(exc).lower()


OnBatch = Callable[[list[RowOutcome], TrialStats], None]


def run_trial(
    loaded: LoadedModel,
    prompts: Sequence[BuiltPrompt],
    settings: GenerationSettings,
    *,
    score_kind: metrics.ScoreKind,
    batch_size: int | None = None,
    on_batch: OnBatch | None = None,
    should_cancel: CancelFn | None = None,
) -> TrialStats:
    """Generate and score every prompt that is not skipped. Returns the totals."""
    todo = sorted((p for p in prompts if not p.skipped), key=lambda p: (-p.tokens, p.index))
    stats = TrialStats(rows_total=len(prompts), rows_skipped=len(prompts) - len(todo))
    all_scores: list[dict[str, float]] = []
    if not todo:
        return stats
    size = batch_size or batch_size_for(loaded, todo[0].tokens, settings.max_new_tokens)
    stats.batch_size = size
    start = 0
    first_began = time.monotonic()
    while start < len(todo):
        if should_cancel and should_cancel():
            stats.cancelled = True
            break
        batch = list(todo[start : start + size])
        began = time.monotonic()
        outputs: Sequence[BatchOutput | BaseException] | None
        timing: dict[str, float] = {}
        try:
            outputs = generate_batch(
                loaded,
                [p.text for p in batch],
                settings,
                should_cancel=should_cancel,
                timing=timing,
            )
        except JobInterrupted:  # the job's own bookkeeping stopped it: never a bad row
            raise
        except Exception as exc:
            if _is_oom(exc) and size > 1:
                size = max(1, size // 2)
                stats.batch_size = size
                logger.warning("Out of memory at batch %s; retrying with %s", len(batch), size)
                _free_cuda(loaded)
                continue
            # Find the row at fault: run the batch's rows one by one.
            outputs = [exc] if len(batch) == 1 else [_one(loaded, p, settings) for p in batch]
        stats.seconds += time.monotonic() - began
        stats.prefill_seconds += timing.get("prefill", 0.0)
        if outputs is None:
            stats.cancelled = True
            break
        outcomes = _score(batch, outputs, score_kind)
        for outcome in outcomes:
            if outcome.status == "done":
                stats.rows_done += 1
                stats.output_tokens += outcome.output_tokens
                all_scores.append(outcome.scores)
            else:
                stats.rows_failed += 1
        stats.batches += 1
        stats.scores = metrics.aggregate(all_scores)
        stats.wall_seconds = round(time.monotonic() - first_began, 3)
        if on_batch:
            on_batch(outcomes, stats)
        start += len(batch)
    return stats


def _one(
    loaded: LoadedModel, prompt: BuiltPrompt, settings: GenerationSettings
) -> BaseException | BatchOutput:
    try:
        result = generate_batch(loaded, [prompt.text], settings)
    except JobInterrupted:
        raise
    except Exception as exc:
        return exc
    return result[0] if result else RuntimeError("cancelled")


def _score(
    batch: Sequence[BuiltPrompt],
    outputs: Sequence[BatchOutput | BaseException],
    score_kind: metrics.ScoreKind,
) -> list[RowOutcome]:
    done = [(p, o) for p, o in zip(batch, outputs, strict=True) if isinstance(o, BatchOutput)]
    scores = metrics.score(score_kind, [o.text for _, o in done], [p.reference for p, _ in done])
    by_index = {p.index: s for (p, _), s in zip(done, scores, strict=True)}
    outcomes = []
    for prompt, output in zip(batch, outputs, strict=True):
        if isinstance(output, BatchOutput):
            outcomes.append(
                RowOutcome(
                    index=prompt.index,
                    status="done",
                    output=output.text,
                    output_tokens=output.output_tokens,
                    finish_reason=output.finish_reason,
                    scores=by_index[prompt.index],
                )
            )
        else:
            outcomes.append(
                RowOutcome(
                    index=prompt.index,
                    status="failed",
                    error=f"{type(output).__name__}: {output}"[:500],
                )
            )
    return outcomes


def _free_cuda(loaded: LoadedModel) -> None:
    if loaded.device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()
