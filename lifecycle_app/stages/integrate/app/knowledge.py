"""Where the project's knowledge index is: the one seam between applications and the
knowledge base (its package builds the index; this reads the current build)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lifecycle_app.projects.models import Project
from lifecycle_app.stages.integrate.knowledge.selectors import knowledge_index_current

INDEX_FILES = ("chunks.jsonl", "dense.npy")


@dataclass(frozen=True)
class IndexLocation:
    folder: str
    embedder_path: str | None  # None: the bundled all-MiniLM-L6-v2
    note: str  # "412 chunks from 9 documents (index #12)"


def index_location(*, project: Project) -> IndexLocation | None:
    """The current (latest ready) index, when its files are still there."""
    index = knowledge_index_current(project=project)
    if index is None or not index.folder:
        return None
    local = Path(index.folder)
    # A store key (a remote store) is fetched by whoever answers; a local folder must hold
    # its files still.
    if local.is_absolute() and not all((local / f).is_file() for f in INDEX_FILES):
        return None
    docs = len(index.document_ids or [])
    note = (
        f"{index.chunk_count} chunks from {docs} document{'s' if docs != 1 else ''} "
        f"(index #{index.id}, {index.embedder_name or 'bundled embedder'})"
    )
    return IndexLocation(index.folder, index.embedder or None, note)
