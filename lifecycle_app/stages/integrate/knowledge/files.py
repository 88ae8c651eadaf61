"""The knowledge base's files in the artifact store (lifecycle_app/storage).

On the local store documents stay where they always were (VAR_DIR/knowledge/<project>/)
and an index row holds its folder's absolute path; on a remote store a document's key is
knowledge/<project id>/<stored name> (derived from the row: no new column) and an index
row holds its folder's key. Workers and the web read both through the local cache, so an
index built on one host answers on any other.
"""

from __future__ import annotations

from pathlib import Path

from lifecycle_app.stages.integrate.knowledge.models import KnowledgeDocument
from lifecycle_app.storage import StoreMissing, is_remote, store


def document_key(document: KnowledgeDocument) -> str:
    return f"knowledge/{document.project_id}/{document.stored_name}"


def document_publish(*, project_id: int, path: Path) -> None:
    """Publish a stored document; on a remote store this host's copy goes once published
    (nothing may read it from this host's disk)."""
    if not is_remote():
        return  # written in place under VAR_DIR/knowledge
    store().put_file(path, f"knowledge/{project_id}/{path.name}")
    path.unlink(missing_ok=True)


def document_local(document: KnowledgeDocument) -> Path:
    """A local path to the document's file (through the cache on a remote store)."""
    if is_remote():
        return store().fetch(document_key(document))
    if not document.path.is_file():
        raise StoreMissing(f"No file {document.path}.")
    return document.path


def document_delete(document: KnowledgeDocument) -> None:
    if is_remote():
        store().delete(document_key(document))
    else:
        document.path.unlink(missing_ok=True)
