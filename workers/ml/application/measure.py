"""Measuring an application: retrieval recall@k and MRR per retriever, answer ROUGE-L,
exact and contains match, and whether the cited chunk holds the reference.

A chunk holds a question's answer when it comes from the question's document (when the
set names one) or contains its passage or its reference answer (normalized text).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from workers.ml.evaluation.general import _normalize, answer_contains
from workers.ml.scoring.metrics import score

RETRIEVERS = ("bm25", "dense", "hybrid")


@dataclass(frozen=True)
class Gold:
    reference: str
    document_name: str = ""
    passage: str = ""

    @property
    def locatable(self) -> bool:
        return bool(self.document_name or self.passage or self.reference)


def holds(chunk_text: str, document_name: str, gold: Gold) -> bool:
    if gold.document_name and document_name == gold.document_name:
        return True
    text = f" {_normalize(chunk_text)} "
    for needle in (gold.passage, gold.reference):
        n = _normalize(needle)
        if n and f" {n} " in text:
            return True
    return False


def first_relevant_rank(hits: Sequence[Any], gold: Gold) -> int | None:
    """1-based rank of the first hit that holds the answer, or None."""
    for rank, hit in enumerate(hits, start=1):
        if holds(hit.chunk.text, hit.chunk.document_name, gold):
            return rank
    return None


def retrieval_scores(ranks: Sequence[int | None], k: int) -> dict[str, float]:
    """recall@k (share of questions with a relevant chunk in the top k) and MRR."""
    if not ranks:
        return {}
    n = len(ranks)
    return {
        "recall_at_k": round(sum(1 for r in ranks if r is not None and r <= k) / n, 6),
        "mrr": round(sum(1.0 / r for r in ranks if r is not None) / n, 6),
    }


def answer_scores(answer: str, gold: Gold) -> dict[str, float]:
    rouge = score("rouge", [answer], [gold.reference])[0]
    return {
        "rougeL": rouge["rougeL"],
        "exact": float(_normalize(answer) == _normalize(gold.reference)),
        "contains": answer_contains(answer, gold.reference),
    }


def citation_holds(
    citations: Sequence[dict[str, Any]], hits: Sequence[dict[str, Any]], gold: Gold
) -> float:
    """1.0 when a cited chunk holds the reference, else 0.0 (no citation: 0.0)."""
    by_id = {h["chunk_id"]: h for h in hits}
    for c in citations:
        hit = by_id.get(c["chunk_id"])
        if hit is not None and holds(hit["text"], hit["document_name"], gold):
            return 1.0
    return 0.0


def mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 6) if values else None


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """The set's figures for one version and one setting, from per-answer scores."""
    keys = ("rougeL", "exact", "contains", "cited_holds")
    out: dict[str, float | None] = {
        k: mean([r[k] for r in rows if r.get(k) is not None]) for k in keys
    }
    out["fallback_rate"] = mean([1.0 if r.get("fallback") else 0.0 for r in rows])
    out["answered"] = float(len(rows))
    return out
