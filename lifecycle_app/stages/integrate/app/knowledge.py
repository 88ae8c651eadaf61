"""Where the project's knowledge index is: the one seam between applications and the
knowledge base (16a's package builds the index; this reads where the last build put it).

The source of truth is the last succeeded index job of the project: its result names the
index folder (and the embedding model it was built with); the folder must still hold the
index files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lifecycle_app.jobs.models import Job, JobKind, JobStatus
from lifecycle_app.projects.models import Project

INDEX_FILES = ("chunks.jsonl", "dense.npy")


@dataclass(frozen=True)
class IndexLocation:
    folder: str
    embedder_path: str | None
    note: str  # "412 chunks from 9 documents (job #12)"


def index_location(*, project: Project) -> IndexLocation | None:
    job = (
        Job.objects.filter(project=project, kind=JobKind.INDEX, status=JobStatus.SUCCEEDED)
        .order_by("-finished_at", "-id")
        .only("id", "result", "params")
        .first()
    )
    if job is None:
        return None
    result, params = job.result or {}, job.params or {}
    folder = result.get("index_folder") or result.get("folder") or params.get("index_folder")
    if not folder or not all((Path(folder) / f).is_file() for f in INDEX_FILES):
        return None
    embedder = result.get("embedder_path") or params.get("embedder_path") or None
    chunks, docs = result.get("chunks"), result.get("documents")
    note = (
        f"{chunks} chunks from {docs} documents (job #{job.id})"
        if chunks is not None
        else f"job #{job.id}"
    )
    return IndexLocation(str(folder), embedder, note)
