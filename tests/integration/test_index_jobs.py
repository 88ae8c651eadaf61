"""Knowledge-base index jobs end to end on a real Celery worker (Redis + PostgreSQL): two
uploaded documents are chunked with the tiny model's tokenizer, embedded by a tiny
sentence-transformers stand-in, indexed, and searched; a running build can be cancelled.

The worker runs with its own LIFECYCLE_VAR_DIR; this process points VAR_DIR at it so the
stored documents are the files the worker reads. The embedder folder is named on the index
row (settings.LIFECYCLE_EMBEDDER when the build starts), so the shared worker needs no
restart to use the stand-in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from lifecycle_app.jobs.services import job_cancel
from lifecycle_app.models import CatalogModel, JobStatus, KnowledgeDocument, KnowledgeIndex, Project
from lifecycle_app.stages.integrate.knowledge import selectors, services
from tests.integration.conftest import WorkerProcess, wait_for_job
from tests.tiny_embedder import build_tiny_embedder

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

REFUNDS = (
    "# Refunds\n\nRefunds are paid within 14 days after the return arrives at the warehouse.\n\n"
    "Gift card orders are refunded as store credit."
)
KETTLE = "The kettle boils water. Descale the kettle every 4 weeks with white vinegar."


@pytest.fixture
def knowledge_storage(live_worker: WorkerProcess, settings: Any, tmp_path: Path) -> Path:
    var = live_worker.log_path.parent / "var"
    settings.VAR_DIR = var
    embedder = build_tiny_embedder(var / "tiny-embedder", REFUNDS + " " + KETTLE)
    settings.LIFECYCLE_EMBEDDER = str(embedder)
    return var


def add(project: Project, user: User, tmp_path: Path, name: str, text: str) -> KnowledgeDocument:
    path = tmp_path / f"upload-{name}"
    path.write_text(text)
    return services.knowledge_document_upload(project=project, user=user, path=path, filename=name)


def test_an_index_job_builds_a_searchable_index_of_two_documents(
    knowledge_storage: Path,
    live_worker: WorkerProcess,
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    tmp_path: Path,
) -> None:
    refunds = add(project, owner, tmp_path, "refunds.md", REFUNDS)
    kettle = add(project, owner, tmp_path, "kettle.txt", KETTLE)
    index = services.knowledge_index_start(
        project=project, user=owner, tokenizer_model=tiny_model, chunk_size=24, chunk_overlap=4
    )
    assert index.job is not None
    job = wait_for_job(index.job.id)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.worker == live_worker.hostname
    index.refresh_from_db()
    refunds.refresh_from_db()
    kettle.refresh_from_db()
    assert index.status == "ready" and index.built_at is not None
    assert refunds.chunk_count >= 2 and kettle.chunk_count >= 1  # 24 tiny-model tokens a chunk
    assert index.chunk_count == refunds.chunk_count + kettle.chunk_count == job.result["chunks"]
    assert job.progress_done == job.progress_total == index.chunk_count
    assert Path(index.folder).is_relative_to(knowledge_storage / "jobs" / str(job.id))
    assert selectors.knowledge_index_current(project=project) == index

    _, result = selectors.knowledge_search(project=project, query="how long do refunds take")
    assert result is not None
    assert result.hits["bm25"][0].chunk.document_name == "refunds.md"
    assert result.hits["hybrid"][0].chunk.document_name == "refunds.md"
    _, result = selectors.knowledge_search(project=project, query="descale the kettle vinegar")
    assert result is not None and result.hits["hybrid"][0].chunk.document_name == "kettle.txt"


def test_cancel_stops_a_running_build_and_keeps_no_index(
    knowledge_storage: Path,
    live_worker: WorkerProcess,
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    tmp_path: Path,
) -> None:
    text = "\n\n".join(f"The kettle number {i} boils water." for i in range(6000))
    add(project, owner, tmp_path, "many.md", text)
    index = services.knowledge_index_start(
        project=project, user=owner, tokenizer_model=tiny_model, chunk_size=16, chunk_overlap=0
    )
    assert index.job is not None
    job = wait_for_job(index.job.id, lambda j: j.progress_done > 0, timeout=120)
    job_cancel(job=job, actor=owner)
    job = wait_for_job(job.id)
    assert job.status == JobStatus.CANCELLED
    assert 0 < job.progress_done < job.progress_total  # stopped between batches
    index.refresh_from_db()
    assert index.status == "cancelled" and index.folder == ""
    assert selectors.knowledge_index_current(project=project) is None
    assert not (
        knowledge_storage / "jobs" / str(job.id) / f"attempt-{job.attempt}" / "index"
    ).exists()
    assert KnowledgeIndex.objects.count() == 1
