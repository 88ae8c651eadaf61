"""Evaluation of one candidate: generate over the test rows, score every metric, measure
perplexity of the references, and check general ability (forgetting).

Generation reuses the prompt-trial runner (`generation.batch.run_trial`: length-sorted
batches sized to memory, cancel within a batch, a failing row recorded and skipped), so a
candidate's outputs are exactly what a prompt trial with the same settings would produce.
Greedy decoding, or sampling seeded by the settings, makes two runs give the same numbers.

Perplexity is exp(mean negative log-likelihood of the reference's tokens given the
prompt), over the whole set (total NLL / total target tokens) and per example. It is
computed with one forward pass per batch of right-padded prompt+reference rows; padding
and prompt positions are masked out, so a row's value does not depend on its batch.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from workers.ml.generation.batch import RowOutcome, TrialStats, _dtype_bytes, row_bytes, run_trial
from workers.ml.generation.stream import CancelFn
from workers.ml.loading import LoadedModel
from workers.ml.params import GenerationSettings
from workers.ml.prompts import BuiltPrompt
from workers.ml.scoring import metrics

NLL_BUDGET_BYTES = 1024 * 2**20
NLL_MAX_BATCH = 16


def sample_indices(n_rows: int, n: int | None, seed: int) -> list[int]:
    """All row positions (n None or >= n_rows), else a seeded sample of n, in file order."""
    if n is None or n >= n_rows:
        return list(range(n_rows))
    return sorted(random.Random(seed).sample(range(n_rows), n))


# --- Perplexity -------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetNll:
    nll: float  # summed over the target's tokens, in nats
    tokens: int

    @property
    def perplexity(self) -> float | None:
        return math.exp(self.nll / self.tokens) if self.tokens else None


def corpus_perplexity(values: Sequence[TargetNll]) -> float | None:
    tokens = sum(v.tokens for v in values)
    return math.exp(sum(v.nll for v in values) / tokens) if tokens else None


def _nll_batch_size(loaded: LoadedModel, longest: int) -> int:
    config = loaded.model.config
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    per_row = row_bytes(config, longest, 0, _dtype_bytes(loaded.model))
    per_row += 2 * longest * int(text.vocab_size) * 4  # logits and their log-softmax
    return max(1, min(NLL_MAX_BATCH, NLL_BUDGET_BYTES // max(per_row, 1)))


def target_nll(
    loaded: LoadedModel,
    prompts: Sequence[str],
    targets: Sequence[str],
    *,
    batch_size: int | None = None,
    should_cancel: CancelFn | None = None,
    exclude_token_ids: Sequence[int] = (),
) -> list[TargetNll] | None:
    """The negative log-likelihood of each target given its prompt (final prompt text,
    chat template applied). None when cancelled. `exclude_token_ids` are left out of every
    softmax (the targets never contain them): e.g. the end token, so that how soon a model
    stops does not change how likely it finds a text."""
    import torch

    tokenizer, model = loaded.tokenizer, loaded.model
    encoded = []
    for prompt, target in zip(prompts, targets, strict=True):
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        t = tokenizer(target, add_special_tokens=False)["input_ids"]
        room = max(0, loaded.context_length - len(t)) if loaded.context_length else len(p)
        p = p[-room:] if room else []  # keep the prompt's end when a row is too long
        encoded.append((p, t))
    order = sorted(range(len(encoded)), key=lambda i: -(len(encoded[i][0]) + len(encoded[i][1])))
    results: list[TargetNll | None] = [None] * len(encoded)
    if not order:
        return []
    longest = len(encoded[order[0]][0]) + len(encoded[order[0]][1])
    size = batch_size or _nll_batch_size(loaded, longest)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for start in range(0, len(order), size):
        if should_cancel and should_cancel():
            return None
        batch = order[start : start + size]
        width = max(len(encoded[i][0]) + len(encoded[i][1]) for i in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        for row, i in enumerate(batch):
            p, t = encoded[i]
            seq = p + t
            ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
            if p:  # the first token has no prediction without a prompt before it
                labels[row, len(p) : len(seq)] = torch.tensor(t)
            elif len(t) > 1:
                labels[row, 1 : len(seq)] = torch.tensor(t[1:])
        ids, mask, labels = ids.to(loaded.device), mask.to(loaded.device), labels.to(loaded.device)
        with torch.inference_mode():
            logits = model(input_ids=ids, attention_mask=mask).logits.float()
            if exclude_token_ids:
                logits[:, :, list(exclude_token_ids)] = float("-inf")
        shift_logits, shift_labels = logits[:, :-1, :], labels[:, 1:]
        losses = torch.nn.functional.cross_entropy(
            shift_logits.reshape(-1, shift_logits.shape[-1]),
            shift_labels.reshape(-1),
            ignore_index=-100,
            reduction="none",
        ).view(shift_labels.shape)
        counted = (shift_labels != -100).sum(dim=1).tolist()
        sums = losses.sum(dim=1).tolist()
        for row, i in enumerate(batch):
            results[i] = TargetNll(nll=float(sums[row]), tokens=int(counted[row]))
    return [r for r in results if r is not None]


# --- One candidate ----------------------------------------------------------------------


@dataclass
class CandidateResult:
    rows: list[RowOutcome]
    stats: TrialStats
    scores: dict[str, float] = field(default_factory=dict)
    cancelled: bool = False


OnRows = Callable[[list[RowOutcome], TrialStats], None]


def run_candidate(
    loaded: LoadedModel,
    prompts: Sequence[BuiltPrompt],
    settings: GenerationSettings,
    *,
    task: metrics.EvalTask,
    batch_size: int | None = None,
    on_batch: OnRows | None = None,
    should_cancel: CancelFn | None = None,
) -> CandidateResult:
    """Generate every prompt, then score every metric of `task` and the references'
    perplexity. Rows passed to `on_batch` carry the runner's live scores; the returned
    rows carry the final ones (every metric, perplexity included)."""
    outcomes: dict[int, RowOutcome] = {}

    def collect(batch: list[RowOutcome], stats: TrialStats) -> None:
        outcomes.update({o.index: o for o in batch})
        if on_batch:
            on_batch(batch, stats)

    stats = run_trial(
        loaded,
        prompts,
        settings,
        score_kind="label" if task == "label" else "rouge",
        batch_size=batch_size,
        on_batch=collect,
        should_cancel=should_cancel,
    )
    rows = [outcomes[i] for i in sorted(outcomes)]
    if stats.cancelled:
        return CandidateResult(rows, stats, cancelled=True)
    return score_candidate(loaded, prompts, rows, stats, task=task, should_cancel=should_cancel)


def score_candidate(
    loaded: LoadedModel,
    prompts: Sequence[BuiltPrompt],
    rows: list[RowOutcome],
    stats: TrialStats,
    *,
    task: metrics.EvalTask,
    should_cancel: CancelFn | None = None,
) -> CandidateResult:
    """Every metric of `task` over the answered rows, and the references' perplexity."""
    done = [o for o in rows if o.status == "done"]
    by_index = {p.index: p for p in prompts}
    per, overall = metrics.score_eval(
        task, [o.output for o in done], [by_index[o.index].reference for o in done]
    )
    nlls = target_nll(
        loaded,
        [by_index[o.index].text for o in done],
        [by_index[o.index].reference for o in done],
        should_cancel=should_cancel,
    )
    if nlls is None:
        return CandidateResult(rows, stats, cancelled=True)
    for outcome, scores, nll in zip(done, per, nlls, strict=True):
        ppl = nll.perplexity
        outcome.scores = {**scores, **({"perplexity": round(ppl, 4)} if ppl else {})}
    ppl = corpus_perplexity(nlls)
    if ppl is not None:
        overall["perplexity"] = round(ppl, 4)
    return CandidateResult(rows, stats, overall)


def reuse_outputs(
    loaded: LoadedModel,
    prompts: Sequence[BuiltPrompt],
    outputs: dict[int, RowOutcome],
    *,
    task: metrics.EvalTask,
    should_cancel: CancelFn | None = None,
) -> CandidateResult:
    """Score outputs generated before (a prompt trial's, for exactly these prompts) without
    generating again: only the references' perplexity needs the model."""
    rows = [outputs[p.index] for p in prompts if p.index in outputs]
    stats = TrialStats(
        rows_total=len(prompts),
        rows_done=sum(o.status == "done" for o in rows),
        rows_skipped=sum(1 for p in prompts if p.skipped),
        output_tokens=sum(o.output_tokens for o in rows),
    )
    return score_candidate(loaded, prompts, rows, stats, task=task, should_cancel=should_cancel)
