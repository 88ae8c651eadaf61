"""Build a knowledge-base index: read the documents, chunk them in the model's tokens,
embed the chunks (progress in chunks, cancel between batches), write BM25 + dense files
into this attempt's folder and publish the index row."""

from __future__ import annotations

import time
from functools import lru_cache
from pathlib import Path
from typing import Any

from django.conf import settings

from lifecycle_app.jobs import services as job_services
from lifecycle_app.jobs.models import Job
from lifecycle_app.stages.integrate.knowledge import selectors as knowledge_selectors
from lifecycle_app.stages.integrate.knowledge import services as knowledge_services
from lifecycle_app.stages.integrate.knowledge.files import document_local
from lifecycle_app.stages.integrate.knowledge.models import IndexStatus
from lifecycle_app.storage import StoreMissing, publish_dir
from workers.ml.errors import UserFacingError
from workers.tasks.base import JobCancelled, JobRun, job_task, model_spec_for

INDEX_SOFT_LIMIT_S = 60 * 60


@lru_cache(maxsize=2)
def _embedder(path: str) -> Any:
    from workers.ml.retrieval.embedder import load_embedder

    return load_embedder(path or None)


def _chunks(job: Job, run: JobRun, index: Any) -> tuple[list[Any], dict[int, int]]:
    from workers.ml import loading as models
    from workers.ml.retrieval.chunking import chunk_document
    from workers.ml.retrieval.documents import DocumentRejected, read_document
    from workers.ml.retrieval.index import Chunk

    documents = run.read(lambda: knowledge_selectors.knowledge_documents_of(index=index))
    if not documents:
        raise UserFacingError(
            "Every document of this index was removed: there is nothing to index."
        )
    tokenizer, _, _ = models.load_tokenizer(model_spec_for(job), Path(settings.MODELS_DIR))
    chunks: list[Chunk] = []
    counts: dict[int, int] = {}
    for number, document in enumerate(documents, 1):
        if run.should_cancel():
            raise JobCancelled
        run.write(
            job_services.job_progress_message,
            job_id=job.id,
            message=f"Chunking {document.name} ({number} of {len(documents)})",
        )
        try:
            text = read_document(
                document_local(document), document.name, text_field=document.text_field or "text"
            )
        except (FileNotFoundError, StoreMissing):
            raise UserFacingError(f"The stored file of {document.name!r} is missing.") from None
        except DocumentRejected as exc:  # accepted at upload; a reader change may refuse it
            raise UserFacingError(f"{document.name}: {exc}") from None
        spans = chunk_document(text.text, tokenizer, index.chunk_size, index.chunk_overlap)
        for position, (_, _, piece) in enumerate(spans):
            chunks.append(
                Chunk(f"{document.id}-{position}", document.id, document.name, position, piece)
            )
        counts[document.id] = len(spans)
    if not chunks:
        raise UserFacingError("The documents hold no text to index.")
    return chunks, counts


def _index(job: Job, run: JobRun) -> None:
    from workers.ml.retrieval.index import IndexCancelled, build_index

    index = run.read(lambda: knowledge_selectors.knowledge_index_for_job(job_id=job.id))
    run.write(job_services.job_progress_message, job_id=job.id, message="Reading the documents")
    try:
        chunks, counts = _chunks(job, run, index)
        run.write(job_services.job_progress, job_id=job.id, done=0, total=len(chunks),
                  message="Loading the embedding model")  # fmt: skip
        embedder = _embedder(index.embedder)
        started = time.perf_counter()

        def on_progress(done: int, total: int) -> None:
            run.write(job_services.job_progress, job_id=job.id, done=done, total=total,
                      message="Embedding chunks")  # fmt: skip

        folder = run.folder / "index"
        meta = build_index(chunks, folder, embedder, progress=on_progress,
                           should_cancel=run.should_cancel)  # fmt: skip
    except (JobCancelled, IndexCancelled):
        run.write(knowledge_services.knowledge_index_mark, index_id=index.id,
                  status=IndexStatus.CANCELLED)  # fmt: skip
        run.write(job_services.job_mark_cancelled, job_id=job.id)
        return
    seconds = time.perf_counter() - started
    stats = {**meta, "chunks_per_s": round(len(chunks) / seconds, 1) if seconds else None}
    # Published to the store before the row names it (its key on a remote store).
    run.write(knowledge_services.knowledge_index_publish, index_id=index.id,
              folder=publish_dir(folder),
              chunk_counts=counts, stats=stats)  # fmt: skip
    run.write(
        job_services.job_succeed,
        job_id=job.id,
        result={
            "chunks": len(chunks),
            "documents": len(counts),
            "chunks_per_s": stats["chunks_per_s"],
        },
        message=f"Indexed {len(chunks)} chunks of {len(counts)} documents",
    )


index_job = job_task(
    _index,
    name="jobs.index",
    soft_time_limit=INDEX_SOFT_LIMIT_S,
    time_limit=INDEX_SOFT_LIMIT_S + 60,
)
