"""A knowledge index on disk and its search: BM25, dense vectors and hybrid.

Files in an index folder (written to a temporary sibling, then renamed, so a reader never
sees half an index): `chunks.jsonl` (one Chunk a line, in index order), `dense.npy`
(float32, one L2-normalised row per chunk: cosine similarity is a dot product),
`bm25/` (bm25s's own files) and `meta.json` (counts, embedder, tokenisation).

Hybrid ranking is reciprocal rank fusion: score = sum over retrievers of 1 / (60 + rank),
with the constant 60 of Cormack, Clarke and Buettcher (2009); each retriever contributes
its top RRF_DEPTH chunks, BM25 only chunks that share a term with the query.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from workers.ml.retrieval.lexical import tokenize

Mode = Literal["bm25", "dense", "hybrid"]
MODES: tuple[Mode, ...] = ("bm25", "dense", "hybrid")
RRF_K = 60
RRF_DEPTH = 100
EMBED_BATCH = 64
FORMAT_VERSION = 1


class IndexCancelled(Exception):
    """`should_cancel` answered True between two batches; nothing was written."""


@dataclass(frozen=True)
class Chunk:
    chunk_id: str
    document_id: int
    document_name: str
    position: int  # 0-based order of the chunk within its document
    text: str


@dataclass
class Hit:
    chunk: Chunk
    score: float  # what the mode ranks by: BM25 score, cosine, or the RRF score for hybrid
    scores: dict[str, float] = field(default_factory=dict)  # per retriever: bm25, dense
    ranks: dict[str, int] = field(default_factory=dict)  # 1-based, where the retriever ranked it

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self.chunk),
            "score": self.score,
            "scores": self.scores,
            "ranks": self.ranks,
        }


def _dimension(embedder: Any) -> int:
    getter = (
        getattr(embedder, "get_embedding_dimension", None)
        or embedder.get_sentence_embedding_dimension
    )
    return int(getter() or 0)


def embed(
    embedder: Any,
    texts: list[str],
    *,
    progress: Callable[[int, int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    batch_size: int = EMBED_BATCH,
) -> np.ndarray:
    """Normalised float32 vectors of `texts`, in batches with progress and cancel between them."""
    dim = _dimension(embedder)
    out = np.zeros((len(texts), dim or 0), dtype=np.float32)
    for i in range(0, len(texts), batch_size):
        if should_cancel and should_cancel():
            raise IndexCancelled
        batch = texts[i : i + batch_size]
        vectors = embedder.encode(
            batch, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
            show_progress_bar=False,
        )  # fmt: skip
        if out.shape[1] == 0:
            out = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
        out[i : i + len(batch)] = vectors
        if progress:
            progress(i + len(batch), len(texts))
    return out


def build_index(
    chunks: list[Chunk],
    folder: Path,
    embedder: Any,
    *,
    progress: Callable[[int, int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Write the index of `chunks` into `folder` (replacing it atomically); returns its meta.

    `progress(done, total)` counts chunks embedded; `should_cancel()` is asked before each
    batch and IndexCancelled raised when it answers True (the folder is then untouched).
    """
    if not chunks:
        raise ValueError("an index needs at least one chunk")
    import bm25s

    started = time.perf_counter()
    vectors = embed(
        embedder, [c.text for c in chunks], progress=progress, should_cancel=should_cancel
    )
    if should_cancel and should_cancel():
        raise IndexCancelled
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    retriever = bm25s.BM25()
    retriever.index([tokenize(c.text) for c in chunks], show_progress=False)
    retriever.save(str(tmp / "bm25"), show_progress=False)
    np.save(tmp / "dense.npy", vectors)
    with (tmp / "chunks.jsonl").open("w", encoding="utf-8") as f:
        for chunk in chunks:
            f.write(json.dumps(asdict(chunk), ensure_ascii=False) + "\n")
    meta = {
        "format": FORMAT_VERSION,
        "chunks": len(chunks),
        "documents": len({c.document_id for c in chunks}),
        "dimension": int(vectors.shape[1]),
        "rrf_k": RRF_K,
        "seconds": round(time.perf_counter() - started, 3),
    }
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    if folder.exists():
        old = folder.parent / f".{folder.name}.old-{os.getpid()}"
        folder.rename(old)
        tmp.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(folder)
    return meta


def _top(scores: np.ndarray, depth: int, positive_only: bool) -> list[int]:
    n = len(scores)
    if n == 0:
        return []
    depth = min(depth, n)
    idx = np.argpartition(-scores, depth - 1)[:depth] if depth < n else np.arange(n)
    idx = idx[np.argsort(-scores[idx], kind="stable")]
    if positive_only:
        idx = idx[scores[idx] > 0]
    return [int(i) for i in idx]


class KnowledgeIndex:
    """A loaded index: chunks, the BM25 retriever and the dense matrix."""

    def __init__(self, chunks: list[Chunk], bm25: Any, vectors: np.ndarray, embedder: Any,
                 meta: dict[str, Any]) -> None:  # fmt: skip
        self.chunks = chunks
        self.bm25 = bm25
        self.vectors = vectors
        self.embedder = embedder
        self.meta = meta

    @classmethod
    def load(cls, folder: Path, embedder: Any) -> KnowledgeIndex:
        import bm25s

        folder = Path(folder)
        with (folder / "chunks.jsonl").open(encoding="utf-8") as f:
            chunks = [Chunk(**json.loads(line)) for line in f if line.strip()]
        bm25 = bm25s.BM25.load(str(folder / "bm25"), show_progress=False)
        vectors = np.load(folder / "dense.npy")
        meta = json.loads((folder / "meta.json").read_text())
        return cls(chunks, bm25, vectors, embedder, meta)

    def __len__(self) -> int:
        return len(self.chunks)

    def bm25_scores(self, query: str) -> np.ndarray:
        tokens = [t for t in tokenize(query) if t in self.bm25.vocab_dict]
        if not tokens:
            return np.zeros(len(self.chunks), dtype=np.float32)
        return np.asarray(self.bm25.get_scores(tokens), dtype=np.float32)

    def dense_scores(self, query: str) -> np.ndarray:
        q = self.embedder.encode(
            [query], normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )[0].astype(np.float32)
        return self.vectors @ q

    def search(self, query: str, mode: Mode, k: int, threshold: float | None = None) -> list[Hit]:
        """The `k` best chunks for `query`.

        `threshold` drops weak hits: for "bm25" the minimum BM25 score; for "dense" and
        "hybrid" the minimum cosine similarity (RRF scores have no absolute meaning, so a
        hybrid hit must be close enough by the dense measure).
        """
        if mode not in MODES:
            raise ValueError(f"unknown retrieval mode {mode!r}")
        if k < 1 or not self.chunks:
            return []
        want_bm25 = mode in ("bm25", "hybrid")
        want_dense = mode in ("dense", "hybrid")
        bm25 = self.bm25_scores(query) if want_bm25 else None
        dense = self.dense_scores(query) if want_dense else None
        depth = max(k, RRF_DEPTH) if mode == "hybrid" else k
        ranks: dict[str, dict[int, int]] = {}
        if bm25 is not None:
            ranks["bm25"] = {i: r for r, i in enumerate(_top(bm25, depth, True), 1)}
        if dense is not None:
            ranks["dense"] = {i: r for r, i in enumerate(_top(dense, depth, False), 1)}
        if mode == "hybrid":
            fused: dict[int, float] = {}
            for per in ranks.values():
                for i, r in per.items():
                    fused[i] = fused.get(i, 0.0) + 1.0 / (RRF_K + r)
            order = sorted(fused, key=lambda i: (-fused[i], i))
            ranked = [(i, fused[i]) for i in order]
        else:
            per = ranks[mode]
            source = bm25 if mode == "bm25" else dense
            assert source is not None
            ranked = [(i, float(source[i])) for i in sorted(per, key=per.__getitem__)]
        hits = []
        for i, score in ranked:
            if threshold is not None:
                gate = (
                    float(bm25[i])
                    if mode == "bm25" and bm25 is not None
                    else (float(dense[i]) if dense is not None else score)
                )
                if gate < threshold:
                    continue
            scores = {}
            if bm25 is not None:
                scores["bm25"] = float(bm25[i])
            if dense is not None:
                scores["dense"] = float(dense[i])
            hit_ranks = {name: per[i] for name, per in ranks.items() if i in per}
            hits.append(Hit(self.chunks[i], float(score), scores, hit_ranks))
            if len(hits) >= k:
                break
        return hits
