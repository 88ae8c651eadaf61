"""Knowledge-base writes: add and remove documents, start an index build, publish it.

Design note. An upload is read in full (workers.ml.retrieval.documents) before anything is
stored: a refused file is deleted and leaves no row and no file. Documents are stored under
VAR_DIR/knowledge/<project id>/ with generated names. The index follows the documents:
removing a document starts a re-index at once (its text must stop being served), while
adding one marks the current index stale and the page offers "Re-index" (people often add
several documents in a row; one build after the last is cheaper than one per upload).
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import shutil
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from lifecycle_app.catalog.models import CatalogModel
from lifecycle_app.jobs.models import Job, JobKind
from lifecycle_app.jobs.services import job_cancel, job_create
from lifecycle_app.projects.models import Project
from lifecycle_app.stages.integrate.knowledge.files import document_delete, document_publish
from lifecycle_app.stages.integrate.knowledge.models import (
    IndexStatus,
    KnowledgeDocument,
    KnowledgeIndex,
    knowledge_dir,
)
from workers.ml.retrieval.documents import DocumentRejected, read_document
from workers.ml.retrieval.embedder import embedder_name

NAME_MAX_CHARS = 200
DEFAULT_CHUNK_SIZE = 256
DEFAULT_CHUNK_OVERLAP = 32


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def knowledge_document_upload(
    *, project: Project, user: User, path: Path, filename: str, text_field: str = "text"
) -> KnowledgeDocument:
    """Read the streamed upload at `path`, then store it; the temporary file is always moved
    or deleted. Raises DocumentRejected (storing nothing) when it cannot be used."""
    name = Path(filename).name[:NAME_MAX_CHARS] or "document"
    try:
        document = read_document(path, name, text_field=text_field or "text")
        sha = _sha256(path)
        twin = KnowledgeDocument.objects.filter(project=project, sha256=sha).first()
        if twin is not None:
            raise DocumentRejected(
                f"{name!r} has the same content as {twin.name!r}, already in the knowledge base."
            )
        folder = knowledge_dir(project.id)
        folder.mkdir(parents=True, exist_ok=True)
        stored = f"{secrets.token_hex(16)}{Path(name).suffix.lower()[:10]}"
        target = folder / stored
        shutil.move(str(path), target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    try:
        size = target.stat().st_size
        document_publish(project_id=project.id, path=target)
        return KnowledgeDocument.objects.create(
            project=project,
            name=name,
            kind=document.kind,
            text_field=(text_field or "text") if document.kind == "jsonl" else "",
            stored_name=stored,
            size_bytes=size,
            sha256=sha,
            characters=len(document.text),
            created_by=user,
        )
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def knowledge_document_remove(*, document: KnowledgeDocument, user: User) -> Job | None:
    """Delete the document and its file; re-index the rest (returns that job), or retire the
    index when no document is left. A re-index the job limits refuse leaves the index
    stale: JobLimitReached propagates after the removal is saved."""
    project = document.project
    latest = (
        KnowledgeIndex.objects.filter(project=project).exclude(status=IndexStatus.RETIRED).first()
    )
    with transaction.atomic():
        document.delete()
        transaction.on_commit(lambda: document_delete(document))
        if not KnowledgeDocument.objects.filter(project=project).exists():
            KnowledgeIndex.objects.filter(project=project, status=IndexStatus.READY).update(
                status=IndexStatus.RETIRED
            )
            return None
    if latest is None:
        return None
    index = knowledge_index_start(
        project=project,
        user=user,
        tokenizer_model=latest.tokenizer_model,
        chunk_size=latest.chunk_size,
        chunk_overlap=latest.chunk_overlap,
    )
    return index.job


def knowledge_index_start(
    *,
    project: Project,
    user: User,
    tokenizer_model: CatalogModel | None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    chunk_overlap: int = DEFAULT_CHUNK_OVERLAP,
) -> KnowledgeIndex:
    """Create an index row and its JobKind.INDEX job (enqueued on commit). A build already
    queued or running for the project is cancelled: it would publish an older document set.
    Raises JobLimitReached (creating nothing) when the job limits refuse."""
    if tokenizer_model is None:
        raise ValueError("an index needs a model whose tokenizer measures the chunks")
    if not 0 <= chunk_overlap < chunk_size:
        raise ValueError("the overlap must be smaller than the chunk size")
    documents = list(KnowledgeDocument.objects.filter(project=project).values_list("id", flat=True))
    if not documents:
        raise ValueError("the knowledge base has no documents to index")
    embedder = settings.LIFECYCLE_EMBEDDER
    with transaction.atomic():
        for older in KnowledgeIndex.objects.filter(
            project=project, status=IndexStatus.BUILDING, job__isnull=False
        ).select_related("job"):
            assert older.job is not None
            if older.job.is_active:
                job_cancel(job=older.job, actor=user)
        params: dict[str, Any] = {
            "chunk_size": chunk_size,
            "chunk_overlap": chunk_overlap,
            "embedder": embedder,
            "document_ids": documents,
        }
        job = job_create(
            project=project,
            user=user,
            kind=JobKind.INDEX,
            base_model=tokenizer_model,
            params=params,
            progress_unit="chunks",
        )
        return KnowledgeIndex.objects.create(
            project=project,
            job=job,
            chunk_size=chunk_size,
            chunk_overlap=chunk_overlap,
            tokenizer_model=tokenizer_model,
            tokenizer_name=tokenizer_model.name,
            embedder=embedder,
            embedder_name=embedder_name(embedder),
            document_ids=documents,
        )


# --- written by the index job (through run.write) ---------------------------------------


def knowledge_index_publish(
    *, index_id: int, folder: str, chunk_counts: dict[int, int], stats: dict[str, Any]
) -> None:
    """Mark a built index ready and record each document's chunk count."""
    with transaction.atomic():
        KnowledgeIndex.objects.filter(id=index_id).update(
            status=IndexStatus.READY,
            folder=folder,
            chunk_count=sum(chunk_counts.values()),
            document_ids=sorted(chunk_counts),
            stats=stats,
            built_at=timezone.now(),
        )
        for document_id, count in chunk_counts.items():
            KnowledgeDocument.objects.filter(id=document_id).update(chunk_count=count)


def knowledge_index_mark(*, index_id: int, status: IndexStatus) -> None:
    KnowledgeIndex.objects.filter(id=index_id).update(status=status)
