"""Per-example scores through `evaluate`, with the metric modules kept in this project.

"rouge" (summarization and other free text): ROUGE-1/2/L F-measures. "label"
(classification): exact match of the generated label; its mean is the accuracy.
Aggregates are means of the per-example scores, so partial results of a running trial
and the final ones are computed the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

ScoreKind = Literal["rouge", "label"]

MODULES = Path(__file__).parent / "metric_modules"
_MODULE_FOR: dict[str, str] = {"rouge": "rouge_scores", "label": "label_match"}
# Metric key -> what the tables call it.
LABELS = {
    "rouge1": "ROUGE-1",
    "rouge2": "ROUGE-2",
    "rougeL": "ROUGE-L",
    "exact_match": "Accuracy",
}
KEYS: dict[str, tuple[str, ...]] = {
    "rouge": ("rouge1", "rouge2", "rougeL"),
    "label": ("exact_match",),
}


@lru_cache(maxsize=4)
def _module(kind: str) -> Any:
    import evaluate

    return evaluate.load(str(MODULES / _MODULE_FOR[kind]), keep_in_memory=True)


def score(
    kind: ScoreKind, predictions: Sequence[str], references: Sequence[str]
) -> list[dict[str, float]]:
    """One {metric: value} dict per example."""
    if not predictions:
        return []
    result = _module(kind).compute(predictions=list(predictions), references=list(references))
    keys = KEYS[kind]
    return [{k: round(float(result[k][i]), 6) for k in keys} for i in range(len(predictions))]


def aggregate(per_example: Sequence[dict[str, float]]) -> dict[str, float]:
    if not per_example:
        return {}
    keys = per_example[0].keys()
    return {k: round(sum(s[k] for s in per_example) / len(per_example), 6) for k in keys}
