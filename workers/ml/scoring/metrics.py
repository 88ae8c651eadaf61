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
_MODULE_FOR: dict[str, str] = {
    "rouge": "rouge_scores",
    "label": "label_match",
    "bleu": "bleu_scores",
    "exact": "exact_match",
    "classification": "classification",
}
# Metric key -> what the tables call it.
LABELS = {
    "rouge1": "ROUGE-1",
    "rouge2": "ROUGE-2",
    "rougeL": "ROUGE-L",
    "exact_match": "Accuracy",
}
# The evaluation scorecard's names (exact match of free text is not an accuracy there).
EVAL_LABELS = {
    "rouge1": "ROUGE-1",
    "rouge2": "ROUGE-2",
    "rougeL": "ROUGE-L",
    "rougeLsum": "ROUGE-Lsum",
    "bleu": "BLEU",
    "exact_match": "Exact match",
    "accuracy": "Accuracy",
    "macro_f1": "Macro-F1",
    "perplexity": "Perplexity",
}
LOWER_IS_BETTER = frozenset({"perplexity"})
KEYS: dict[str, tuple[str, ...]] = {
    "rouge": ("rouge1", "rouge2", "rougeL"),
    "label": ("exact_match",),
}


@lru_cache(maxsize=4)
def _module(kind: str) -> Any:
    import evaluate

    return evaluate.load(str(MODULES / _MODULE_FOR[kind]), keep_in_memory=True)


def module(kind: str) -> Any:
    """The `evaluate` module of one family ("rouge", "bleu", "exact", "classification",
    "label"), loaded once per process."""
    return _module(kind)


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


# --- Evaluation ------------------------------------------------------------------------

EvalTask = Literal["text", "label"]
# What the scorecard shows per task, in column order (perplexity is added by the worker,
# which needs the model for it).
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "text": ("rouge1", "rouge2", "rougeL", "rougeLsum", "bleu", "exact_match"),
    "label": ("accuracy", "macro_f1"),
}


def score_eval(
    task: EvalTask, predictions: Sequence[str], references: Sequence[str]
) -> tuple[list[dict[str, float]], dict[str, float]]:
    """Every evaluation metric of `task`: one {metric: value} dict per example, and the
    set's figures. Set figures are means of the per-example values, except BLEU (corpus
    BLEU) and macro-F1 (computed over the whole set), which are not averages by nature."""
    if not predictions:
        return [], {}
    preds, refs = list(predictions), list(references)
    n = len(preds)
    if task == "label":
        result = _module("classification").compute(predictions=preds, references=refs)
        per = [{"accuracy": float(result["correct"][i])} for i in range(n)]
        overall = {"accuracy": float(result["accuracy"]), "macro_f1": float(result["macro_f1"])}
    else:
        rouge = _module("rouge").compute(
            predictions=preds, references=refs, rouge_types=list(TASK_METRICS["text"][:4])
        )
        bleu = _module("bleu").compute(predictions=preds, references=refs)
        exact = _module("exact").compute(predictions=preds, references=refs)
        per = [
            {
                **{k: float(rouge[k][i]) for k in TASK_METRICS["text"][:4]},
                "bleu": float(bleu["bleu"][i]),
                "exact_match": float(exact["exact_match"][i]),
            }
            for i in range(n)
        ]
        overall = aggregate(per)
        overall["bleu"] = float(bleu["corpus_bleu"])
    per = [{k: round(v, 6) for k, v in row.items()} for row in per]
    return per, {k: round(v, 6) for k, v in overall.items()}
