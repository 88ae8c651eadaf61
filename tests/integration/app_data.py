"""A small knowledge base for application tests: three documents uploaded and indexed by
the knowledge base's own index job on the worker."""

from __future__ import annotations

from pathlib import Path

from django.contrib.auth.models import User

from lifecycle_app.models import CatalogModel, JobStatus, KnowledgeIndex, Project
from tests.integration.conftest import wait_for_job

DOCUMENTS = {
    "office.md": [
        "The office opens at nine in the morning and closes at six.",
        "Visitors sign in at the front desk on the ground floor.",
    ],
    "lunch.md": [
        "Lunch is served at noon in the canteen on the second floor.",
        "The canteen closes at two in the afternoon.",
    ],
    "parking.md": ["Parking is free for staff in the garage behind the building."],
}
QUESTIONS = [
    {"question": "When is lunch served?", "answer": "at noon", "document": "lunch.md"},
    {"question": "Where do visitors sign in?", "answer": "front desk", "document": "office.md"},
    {"question": "Is parking free for staff?", "answer": "free", "document": "parking.md"},
]


def build_knowledge_index(
    project: Project, user: User, model: CatalogModel, folder: Path
) -> KnowledgeIndex:
    """Upload the documents to the knowledge base and run its index job on the worker
    (the bundled embedding model, the model's tokenizer for chunk sizes)."""
    from lifecycle_app.stages.integrate.knowledge.services import (
        knowledge_document_upload,
        knowledge_index_start,
    )

    folder.mkdir(parents=True, exist_ok=True)
    for name, paragraphs in DOCUMENTS.items():
        path = folder / name
        path.write_text("\n\n".join(paragraphs) + "\n")
        knowledge_document_upload(project=project, user=user, path=path, filename=name)
    index = knowledge_index_start(
        project=project, user=user, tokenizer_model=model, chunk_size=32, chunk_overlap=0
    )
    assert index.job is not None
    job = wait_for_job(index.job.id, timeout=180)
    assert job.status == JobStatus.SUCCEEDED, (job.error, job.traceback[-2000:])
    index.refresh_from_db()
    return index
