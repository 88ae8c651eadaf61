"""The scorecard of one evaluation, as plain data for the page, the chart and the exports.

One row per candidate, one column per metric; against the baseline each cell has its
absolute change (value - baseline) and relative change ((value - baseline) / |baseline|),
the best value of each column is flagged (lowest for perplexity), and the Scope stage's
target, when the scorecard measures its metric, gives each candidate a pass or fail.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from lifecycle_app.common import csv_safe
from lifecycle_app.stages.evaluate.models import (
    CandidateStatus,
    EvaluationCandidate,
    EvaluationExample,
)
from lifecycle_app.stages.prompt.baseline import points, primary_metric
from lifecycle_app.stages.scope.guide import METRICS
from workers.ml.scoring.metrics import EVAL_LABELS, LOWER_IS_BETTER, TASK_METRICS

# The forgetting check: multiple choice by log-likelihood first (knowledge), the free
# answers and the references' perplexity beside it (they move with answer length and style).
GENERAL_KEYS = ("mc_accuracy", "answer_match", "perplexity")
GENERAL_LABELS = {
    "mc_accuracy": "General knowledge (multiple choice)",
    "answer_match": "Free answers (secondary)",
    "perplexity": "General perplexity (secondary)",
}
# Scope's success metric -> the scorecard column that measures it.
SCOPE_METRIC_KEYS = {
    "rouge_l": "rougeL",
    "rouge_1": "rouge1",
    "bleu": "bleu",
    "accuracy": "accuracy",
    "f1": "macro_f1",
    "exact_match": "exact_match",
}


@dataclass
class Cell:
    value: float | None
    delta: float | None = None
    relative: float | None = None
    best: bool = False
    better: bool | None = None  # than the baseline (None: same, or no baseline value)


@dataclass
class Row:
    candidate: EvaluationCandidate
    cells: dict[str, Cell]
    general: dict[str, Cell]
    is_baseline: bool = False
    passes: bool | None = None  # the Scope target (None: no target or no score)
    vs_zero: str = ""  # "+5.8 ROUGE-1 vs zero-shot" for a few-shot trial (same model)

    @property
    def available(self) -> bool:
        return self.candidate.status == CandidateStatus.DONE


@dataclass
class Target:
    key: str
    label: str
    value: float
    measured: bool


@dataclass
class Scorecard:
    columns: list[tuple[str, str]]
    general_columns: list[tuple[str, str]]
    rows: list[Row]
    baseline: EvaluationCandidate | None
    target: Target | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def span(self) -> int:
        """How many columns follow the candidate's name (for an unavailable row)."""
        target = 1 if self.target and self.target.measured else 0
        return len(self.columns) + len(self.general_columns) + target

    def chart_data(self) -> dict[str, Any]:
        """What static/js/scorecard.js draws: per metric, one bar per scored candidate."""
        scored = [r for r in self.rows if r.available]
        return {
            "candidates": [r.candidate.label for r in scored],
            "baseline": next((i for i, r in enumerate(scored) if r.is_baseline), None),
            "metrics": [
                {
                    "key": key,
                    "label": label,
                    "lower_is_better": key in LOWER_IS_BETTER,
                    "values": [r.cells[key].value for r in scored],
                }
                for key, label in self.columns
            ],
            "target": (
                {"key": self.target.key, "value": self.target.value, "label": self.target.label}
                if self.target and self.target.measured
                else None
            ),
        }


def _change(value: float | None, base: float | None, key: str) -> Cell:
    cell = Cell(value)
    if value is None or base is None:
        return cell
    cell.delta = round(value - base, 6)
    cell.relative = round((value - base) / abs(base), 6) if base else None
    if cell.delta:
        cell.better = (cell.delta < 0) if key in LOWER_IS_BETTER else (cell.delta > 0)
    return cell


def default_baseline(candidates: Sequence[EvaluationCandidate]) -> EvaluationCandidate | None:
    """The zero-shot base model when there is one, else the first scored candidate."""
    scored = [c for c in candidates if c.status == CandidateStatus.DONE]
    for c in scored:
        if c.kind == "base" or (c.kind == "trial" and (c.spec or {}).get("shots") == 0):
            return c
    return scored[0] if scored else None


def build(
    candidates: Sequence[EvaluationCandidate],
    *,
    task: str,
    baseline_id: int | None = None,
    scope: dict[str, Any] | None = None,
) -> Scorecard:
    scored = [c for c in candidates if c.status == CandidateStatus.DONE]
    baseline = next((c for c in scored if c.id == baseline_id), None) or default_baseline(
        candidates
    )
    keys = [k for k in TASK_METRICS.get(task, ()) if any(k in c.scores for c in scored)]
    if any("perplexity" in c.scores for c in scored):
        keys.append("perplexity")
    general_keys = [k for k in GENERAL_KEYS if any(k in c.general_scores for c in scored)]
    rows = []
    for c in candidates:
        base_scores = baseline.scores if baseline else {}
        base_general = baseline.general_scores if baseline else {}
        available = c.status == CandidateStatus.DONE
        rows.append(
            Row(
                candidate=c,
                cells={
                    k: _change(c.scores.get(k) if available else None, base_scores.get(k), k)
                    for k in keys
                },
                general={
                    k: _change(
                        c.general_scores.get(k) if available else None, base_general.get(k), k
                    )
                    for k in general_keys
                },
                is_baseline=baseline is not None and c.id == baseline.id,
            )
        )
    _zero_shot_changes(rows)
    for k in keys:
        values = [v for r in rows if (v := r.cells[k].value) is not None]
        if len(values) > 1 and len(set(values)) > 1:  # a tie across the board is no "best"
            best = min(values) if k in LOWER_IS_BETTER else max(values)
            for r in rows:
                r.cells[k].best = r.cells[k].value == best
    card = Scorecard(
        columns=[(k, EVAL_LABELS.get(k, k)) for k in keys],
        general_columns=[(k, GENERAL_LABELS[k]) for k in general_keys],
        rows=rows,
        baseline=baseline,
    )
    _apply_target(card, scope or {})
    return card


def _is_zero_shot(c: EvaluationCandidate) -> bool:
    return c.kind == "base" or (c.kind == "trial" and not (c.spec or {}).get("shots"))


def _zero_shot_changes(rows: list[Row]) -> None:
    """Each few-shot trial's change against the zero-shot candidate of the same model in
    this evaluation (so on the same rows), whichever baseline the table uses."""
    zero = {
        r.candidate.base_model_id: r.candidate
        for r in reversed(rows)
        if r.available and _is_zero_shot(r.candidate)
    }
    for r in rows:
        c = r.candidate
        z = zero.get(c.base_model_id)
        if not r.available or z is None or _is_zero_shot(c) or c.kind != "trial":
            continue
        metric = primary_metric({k: v for k, v in c.scores.items() if k != "perplexity"})
        if metric is None or metric not in z.scores:
            continue
        label = EVAL_LABELS.get(metric, metric)
        r.vs_zero = f"{points(c.scores[metric] - z.scores[metric])} {label} vs zero-shot"


def _apply_target(card: Scorecard, scope: dict[str, Any]) -> None:
    metric, target = scope.get("success_metric"), scope.get("metric_target")
    if not metric or target is None:
        return
    key = SCOPE_METRIC_KEYS.get(metric, "")
    measured = any(k == key for k, _ in card.columns)

    label = METRICS[metric].label if metric in METRICS else metric
    card.target = Target(key=key, label=label, value=float(target), measured=measured)
    if not any(r.available for r in card.rows):
        return  # nothing scored yet (a queued evaluation): nothing to say about the target
    if not measured:
        card.notes.append(
            f"The Scope target is on {label}, which this evaluation does not measure."
        )
        return
    for r in card.rows:
        value = r.cells[key].value
        r.passes = None if value is None else value >= float(target)


def primary_key(card: Scorecard) -> str | None:
    """The metric that decides: the Scope target's when measured, else the first column."""
    if card.target and card.target.measured:
        return card.target.key
    return card.columns[0][0] if card.columns else None


def leader(card: Scorecard) -> Row | None:
    """The best scored candidate other than the baseline, on the primary metric."""
    key = primary_key(card)
    if key is None:
        return None
    rows = [
        r for r in card.rows if r.available and not r.is_baseline and r.cells[key].value is not None
    ]
    if not rows:
        return None
    sign = 1.0 if key in LOWER_IS_BETTER else -1.0
    return min(rows, key=lambda r: sign * float(r.cells[key].value or 0.0))


# --- Exports ----------------------------------------------------------------------------


def as_records(card: Scorecard) -> list[dict[str, Any]]:
    records = []
    for r in card.rows:
        c = r.candidate
        record: dict[str, Any] = {
            "candidate_id": c.id,
            "label": c.label,
            "kind": c.kind,
            "status": c.status,
            "reason": c.reason,
            "baseline": r.is_baseline,
            "passes_target": r.passes,
        }
        for key, _ in card.columns:
            cell = r.cells[key]
            record[key] = cell.value
            record[f"{key}_change"] = cell.delta
            record[f"{key}_relative_change"] = cell.relative
        for key, _ in card.general_columns:
            cell = r.general[key]
            record[f"general_{key}"] = cell.value
            record[f"general_{key}_change"] = cell.delta
        records.append(record)
    return records


def to_csv(records: Sequence[dict[str, Any]]) -> str:
    out = io.StringIO()
    if records:
        # csv_safe: model outputs, inputs and labels are text from people and models.
        writer = csv_safe.DictWriter(out, fieldnames=list(records[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
    return out.getvalue()


def example_records(
    candidates: Sequence[EvaluationCandidate], examples: Sequence[EvaluationExample]
) -> list[dict[str, Any]]:
    labels = {c.id: c.label for c in candidates}
    keys: list[str] = []
    for e in examples:
        keys += [k for k in e.scores if k not in keys]
    return [
        {
            "candidate_id": e.candidate_id,
            "candidate": labels.get(e.candidate_id, ""),
            "index": e.index,
            "line": e.line,
            "status": e.status,
            "input": e.input,
            "reference": e.reference,
            "output": e.output,
            **{k: e.scores.get(k) for k in keys},
            "error": e.error,
        }
        for e in examples
    ]


# --- Side by side -----------------------------------------------------------------------


@dataclass
class Pair:
    index: int
    line: int
    input: str
    reference: str
    a: EvaluationExample
    b: EvaluationExample
    a_score: float | None
    b_score: float | None

    @property
    def difference(self) -> float | None:
        """B minus A on the chosen metric."""
        if self.a_score is None or self.b_score is None:
            return None
        return round(self.b_score - self.a_score, 6)


def pairs(
    a: Sequence[EvaluationExample], b: Sequence[EvaluationExample], *, metric: str, sort: str
) -> list[Pair]:
    """The rows both candidates answered, aligned by row; sorted by B - A ("diff": B's
    biggest wins first; "-diff": A's biggest wins first) or by row ("row")."""
    by_index = {e.index: e for e in b}
    out = [
        Pair(
            index=e.index,
            line=e.line,
            input=e.input,
            reference=e.reference,
            a=e,
            b=by_index[e.index],
            a_score=e.scores.get(metric),
            b_score=by_index[e.index].scores.get(metric),
        )
        for e in a
        if e.index in by_index
    ]
    if sort in ("diff", "-diff"):
        sign = -1 if metric in LOWER_IS_BETTER else 1
        present = [p for p in out if p.difference is not None]
        missing = [p for p in out if p.difference is None]
        present.sort(key=lambda p: sign * (p.difference or 0.0), reverse=sort == "diff")
        return present + missing
    return out
