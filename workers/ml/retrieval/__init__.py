"""Retrieval for the application stage: document readers, chunking, BM25 + dense + hybrid.

No Django here: a test, a shell or the bench can build and search an index directly.
"""

from __future__ import annotations

from workers.ml.retrieval.chunking import chunk_document
from workers.ml.retrieval.documents import DocumentRejected, DocumentText, read_document
from workers.ml.retrieval.embedder import bundled_embedder_path, load_embedder
from workers.ml.retrieval.index import (
    MODES,
    RRF_K,
    Chunk,
    Hit,
    IndexCancelled,
    KnowledgeIndex,
    build_index,
)

__all__ = [
    "MODES",
    "RRF_K",
    "Chunk",
    "DocumentRejected",
    "DocumentText",
    "Hit",
    "IndexCancelled",
    "KnowledgeIndex",
    "build_index",
    "bundled_embedder_path",
    "chunk_document",
    "load_embedder",
    "read_document",
]
