"""Shots chosen by similarity ("dynamic few-shot"): for each row, the k train rows whose
inputs are most like its input, by BM25 (the `bm25s` package: numpy only, no torch).

Rules every caller relies on:
- a row never gets itself as a shot (same dataset line) nor a duplicate of itself (the same
  input once lower-cased and with its spaces collapsed), so a shot never leaks the answer;
- the k shots of a row are k different inputs (duplicated train rows count once);
- ties (rows BM25 scores the same, e.g. no shared word) are broken by a seeded shuffle, so
  the same seed picks the same shots and another seed may pick others among the ties;
- the shots are ordered least similar first, so the most similar example sits right
  before the row (the usual order for in-context examples).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any


def _key(text: str) -> str:
    return " ".join(str(text).lower().split())


def similar_shots(
    train_rows: Sequence[dict[str, Any]],
    rows: Sequence[dict[str, Any]],
    k: int,
    *,
    seed: int = 0,
) -> list[list[dict[str, Any]]]:
    """For each of `rows`, its k most similar train rows (see the module notes)."""
    if k <= 0:
        return [[] for _ in rows]
    distinct = len({_key(r["input"]) for r in train_rows})
    if k > distinct:
        raise ValueError(
            f"{k} examples were asked for but the train split has {distinct} distinct inputs."
        )
    import bm25s
    import numpy as np

    corpus = [str(r["input"]) for r in train_rows]
    tokens = bm25s.tokenize(corpus, stopwords="en", show_progress=False)
    retriever = bm25s.BM25()
    retriever.index(tokens, show_progress=False)
    vocab = retriever.vocab_dict
    # A seeded random rank per train row breaks ties reproducibly.
    tiebreak = np.array(random.Random(seed).sample(range(len(train_rows)), len(train_rows)))
    queries = bm25s.tokenize(
        [str(r["input"]) for r in rows], stopwords="en", show_progress=False, return_ids=False
    )
    picked_per_row: list[list[dict[str, Any]]] = []
    for row, query in zip(rows, queries, strict=True):
        known = [t for t in query if t in vocab]
        scores = retriever.get_scores(known) if known else np.zeros(len(train_rows))
        order = np.lexsort((tiebreak, -np.asarray(scores)))
        own_line, own_key = row.get("line"), _key(row["input"])
        seen = {own_key}
        picked: list[dict[str, Any]] = []
        for i in order:
            candidate = train_rows[int(i)]
            key = _key(candidate["input"])
            if key in seen or (own_line is not None and candidate.get("line") == own_line):
                continue
            seen.add(key)
            picked.append(candidate)
            if len(picked) == k:
                break
        if len(picked) < k:
            raise ValueError(
                f"Only {len(picked)} train rows differ from line {own_line}; use fewer examples."
            )
        picked_per_row.append(picked[::-1])
    return picked_per_row
