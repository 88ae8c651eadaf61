"""A small knowledge index for application tests: three documents, indexed by the
retrieval core with the tiny embedder, recorded as the project's succeeded index job."""

from __future__ import annotations

from pathlib import Path

from django.utils import timezone

from lifecycle_app.models import Job, JobKind, JobStatus, Project
from tests.tiny_embedder import build_tiny_embedder

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


def build_knowledge_index(project: Project, folder: Path) -> Job:
    from workers.ml.retrieval import Chunk, build_index, load_embedder

    text = " ".join(" ".join(p) for p in DOCUMENTS.values())
    embedder_path = build_tiny_embedder(folder / "embedder", text)
    chunks = [
        Chunk(f"{doc_id}-{i}", doc_id, name, i, paragraph)
        for doc_id, (name, paragraphs) in enumerate(DOCUMENTS.items(), start=1)
        for i, paragraph in enumerate(paragraphs)
    ]
    index = folder / "index"
    meta = build_index(chunks, index, load_embedder(str(embedder_path)))
    return Job.objects.create(
        project=project,
        kind=JobKind.INDEX,
        status=JobStatus.SUCCEEDED,
        finished_at=timezone.now(),
        result={**meta, "index_folder": str(index), "embedder_path": str(embedder_path)},
    )
