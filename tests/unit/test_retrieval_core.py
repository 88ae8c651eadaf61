"""Chunking in tokens, and BM25 / dense / hybrid search on a small corpus with a tiny
sentence-transformers stand-in built in the test (random weights: dense similarity here
follows shared words, so the dense checks use queries that repeat a chunk's words)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from tests.tiny_embedder import build_tiny_embedder
from workers.ml.retrieval import (
    RRF_K,
    Chunk,
    IndexCancelled,
    KnowledgeIndex,
    build_index,
    chunk_document,
    load_embedder,
)
from workers.ml.retrieval.lexical import stem, tokenize

CORPUS = [
    "Refunds are paid within 14 days after the return arrives.",
    "The kettle boils water at the temperature you set in the app.",
    "Reset your account password from the email we send you.",
    "Shipping is free on orders over 50 euros; delivery takes two days.",
    "The lamp pairs over bluetooth; a firmware update fixes pairing.",
    "The warranty covers the battery and the screen for two years.",
]


@pytest.fixture(scope="module")
def embedder(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = build_tiny_embedder(tmp_path_factory.mktemp("emb") / "tiny", " ".join(CORPUS))
    return load_embedder(str(folder))


@pytest.fixture(scope="module")
def tokenizer(embedder: Any) -> Any:
    return embedder.tokenizer


@pytest.fixture(scope="module")
def index(embedder: Any, tmp_path_factory: pytest.TempPathFactory) -> KnowledgeIndex:
    chunks = [Chunk(f"d{i}-0", i, f"doc{i}.md", 0, t) for i, t in enumerate(CORPUS)]
    folder = tmp_path_factory.mktemp("idx") / "index"
    build_index(chunks, folder, embedder)
    return KnowledgeIndex.load(folder, embedder)


def ntok(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


# --- chunking -----------------------------------------------------------------------------


def test_chunks_end_on_paragraph_boundaries_when_paragraphs_fit(tokenizer: Any) -> None:
    text = "The lamp is bright. It has an app.\n\nThe kettle boils water. It is fast.\n\nCat."
    chunks = chunk_document(text, tokenizer, size_tokens=12, overlap_tokens=0)
    assert [c[2] for c in chunks] == [
        "The lamp is bright. It has an app.",
        "The kettle boils water. It is fast.\n\nCat.",
    ]
    for start, end, chunk in chunks:
        assert text[start:end] == chunk
        assert ntok(tokenizer, chunk) <= 12


def test_a_long_paragraph_splits_on_sentences_with_overlap(tokenizer: Any) -> None:
    sentences = [f"The {w} is here." for w in ("cat", "dog", "fish", "bird", "sun", "moon")]
    text = " ".join(sentences)
    chunks = chunk_document(text, tokenizer, size_tokens=10, overlap_tokens=5)
    texts = [c[2] for c in chunks]
    assert texts[0] == "The cat is here. The dog is here."
    # The next chunk repeats the last sentence (5 tokens) of the previous one.
    assert texts[1].startswith("The dog is here.")
    assert all(ntok(tokenizer, t) <= 10 for t in texts)
    assert texts[-1].endswith("The moon is here.")
    covered = "".join(text[s:e] for s, e, _ in chunks)
    assert all(s in covered for s in sentences)


def test_a_giant_sentence_falls_back_to_token_windows(tokenizer: Any) -> None:
    text = " ".join(["apple banana orange"] * 40)  # no sentence or paragraph boundary
    chunks = chunk_document(text, tokenizer, size_tokens=16, overlap_tokens=8)
    assert len(chunks) > 5
    assert all(ntok(tokenizer, c[2]) <= 16 for c in chunks)
    for (s1, e1, _), (s2, _e2, _) in itertools.pairwise(chunks):
        assert s1 < s2 < e1  # windows overlap and advance
    assert chunks[0][0] == 0 and chunks[-1][1] == len(text)


def test_chunk_arguments_are_checked(tokenizer: Any) -> None:
    with pytest.raises(ValueError):
        chunk_document("x", tokenizer, size_tokens=8, overlap_tokens=8)
    assert chunk_document("  \n\n ", tokenizer, 8, 0) == []


# --- BM25 tokenisation --------------------------------------------------------------------


def test_bm25_tokens_drop_stop_words_and_stem_plurals() -> None:
    assert tokenize("How do I get my Refunds?") == ["get", "refund"]
    assert stem("batteries") == "battery" and stem("boxes") == "box" and stem("glass") == "glass"


# --- search -------------------------------------------------------------------------------


def test_bm25_finds_the_chunk_sharing_rare_terms(index: KnowledgeIndex) -> None:
    hits = index.search("how long do refunds take", "bm25", k=3)
    assert hits[0].chunk.document_name == "doc0.md"
    assert hits[0].ranks == {"bm25": 1} and hits[0].score == hits[0].scores["bm25"] > 0
    assert all(h.scores["bm25"] > 0 for h in hits)  # no zero-score filler


def test_dense_ranks_by_cosine(index: KnowledgeIndex) -> None:
    hits = index.search(CORPUS[2], "dense", k=6)
    assert hits[0].chunk.chunk_id == "d2-0"
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert [h.ranks["dense"] for h in hits] == [1, 2, 3, 4, 5, 6]
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_hybrid_is_reciprocal_rank_fusion(index: KnowledgeIndex) -> None:
    hits = index.search("kettle water temperature", "hybrid", k=6)
    assert hits[0].chunk.chunk_id == "d1-0"
    for hit in hits:
        expected = sum(1 / (RRF_K + r) for r in hit.ranks.values())
        assert hit.score == pytest.approx(expected)
        assert set(hit.scores) == {"bm25", "dense"}
    assert hits[0].ranks["bm25"] == 1


def test_threshold_drops_weak_hits(index: KnowledgeIndex) -> None:
    assert index.search("kettle", "bm25", k=6, threshold=1000.0) == []
    strong = index.search(CORPUS[3], "dense", k=6, threshold=0.9999)
    assert [h.chunk.chunk_id for h in strong] == ["d3-0"]


def test_build_reports_progress_and_cancel_leaves_the_old_index(
    embedder: Any, tmp_path: Path
) -> None:
    chunks = [Chunk(f"c{i}", 1, "a.txt", i, f"the cat number {i}") for i in range(150)]
    seen: list[tuple[int, int]] = []
    folder = tmp_path / "index"
    meta = build_index(chunks, folder, embedder, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(64, 150), (128, 150), (150, 150)] and meta["chunks"] == 150
    asked = iter([False, True])
    with pytest.raises(IndexCancelled):
        build_index(chunks[:10] * 20, folder, embedder, should_cancel=lambda: next(asked))
    assert len(KnowledgeIndex.load(folder, embedder)) == 150
    assert [p.name for p in tmp_path.iterdir()] == ["index"]  # no temporary folders left
