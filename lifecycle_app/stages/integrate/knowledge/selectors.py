"""Knowledge-base reads: documents, the current and latest index, staleness, a test search."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from django.conf import settings
from django.http import Http404

from lifecycle_app.catalog.models import CatalogModel
from lifecycle_app.datasets.selectors import profile_model_for
from lifecycle_app.projects.models import Project
from lifecycle_app.projects.selectors import MAX_ID
from lifecycle_app.stages.deploy import serving
from lifecycle_app.stages.integrate.knowledge.models import (
    IndexStatus,
    KnowledgeDocument,
    KnowledgeIndex,
)
from workers.ml.retrieval.index import Chunk, Hit

SEARCH_K = 3


def knowledge_document_list(*, project: Project) -> list[KnowledgeDocument]:
    return list(KnowledgeDocument.objects.filter(project=project).select_related("created_by"))


def knowledge_document_get(*, project: Project, document_id: int) -> KnowledgeDocument:
    if not 0 < document_id <= MAX_ID:
        raise Http404("No such document.")
    document = KnowledgeDocument.objects.filter(project=project, id=document_id).first()
    if document is None:
        raise Http404("No such document.")
    return document


def knowledge_index_current(*, project: Project) -> KnowledgeIndex | None:
    """The latest successfully built index, the one searches and applications use."""
    return (
        KnowledgeIndex.objects.filter(project=project, status=IndexStatus.READY)
        .select_related("tokenizer_model")
        .first()
    )


def knowledge_index_latest(*, project: Project) -> KnowledgeIndex | None:
    """The latest build in any state (a running one shows its progress)."""
    return (
        KnowledgeIndex.objects.filter(project=project)
        .exclude(status=IndexStatus.RETIRED)
        .select_related("job", "tokenizer_model")
        .first()
    )


def knowledge_index_get(*, project: Project, index_id: int) -> KnowledgeIndex:
    if not 0 < index_id <= MAX_ID:
        raise Http404("No such index.")
    index = (
        KnowledgeIndex.objects.filter(project=project, id=index_id).select_related("job").first()
    )
    if index is None:
        raise Http404("No such index.")
    return index


def knowledge_index_for_job(*, job_id: int) -> KnowledgeIndex:
    return KnowledgeIndex.objects.get(job_id=job_id)


def knowledge_documents_of(*, index: KnowledgeIndex) -> list[KnowledgeDocument]:
    """The index's documents that still exist (one removed since is simply left out)."""
    return list(KnowledgeDocument.objects.filter(id__in=index.document_ids).order_by("id"))


def knowledge_is_stale(*, project: Project, index: KnowledgeIndex | None) -> bool:
    """Whether the documents changed since `index` was built from them."""
    if index is None:
        return False
    current = set(KnowledgeDocument.objects.filter(project=project).values_list("id", flat=True))
    return current != set(index.document_ids)


def knowledge_default_tokenizer(*, project: Project) -> CatalogModel | None:
    """Chunks are measured with the project's chosen model, else the bundled one."""
    return profile_model_for(project=project)


# --- the test search on the page ----------------------------------------------------------
# Answered by the serving worker (`serve.search`), which keeps indexes and the embedder
# loaded for the applications anyway: the web process loads no model and never fetches an
# index from the store (on several machines it may not be able to).


@dataclass
class SearchResult:
    query: str
    hits: dict[str, list[Hit]]  # per mode: bm25, dense, hybrid
    error: str = ""


def _hit(row: dict[str, Any]) -> Hit:
    chunk = Chunk(**{f.name: row[f.name] for f in fields(Chunk)})
    return Hit(chunk=chunk, score=row["score"], scores=row["scores"], ranks=row["ranks"])


def knowledge_search(
    *, project: Project, query: str, k: int = SEARCH_K
) -> tuple[KnowledgeIndex | None, SearchResult | None]:
    """The top `k` chunks of the current index for `query`, per retriever. Hits of
    documents removed since the build are left out."""
    index = knowledge_index_current(project=project)
    if index is None or not query.strip():
        return index, None
    timeout = settings.SERVE_TIMEOUT_S
    try:
        reply = serving.serve_call(
            "serve.search", [index.folder, index.embedder, query, k + 5], timeout
        )
    except serving.ServingUnavailable as exc:
        reply = {"ok": False, "message": f"The serving queue could not be reached ({exc})."}
    if reply is None:
        reply = {
            "ok": False,
            "message": f"The serving worker did not answer within {timeout:.0f} s. Searches "
            "run there (queue serve), beside the applications: is it running?",
        }
    if not reply.get("ok"):
        return index, SearchResult(query=query, hits={}, error=str(reply.get("message")))
    live = set(KnowledgeDocument.objects.filter(project=project).values_list("id", flat=True))
    hits = {
        mode: [_hit(row) for row in rows if row["document_id"] in live][:k]
        for mode, rows in reply["hits"].items()
    }
    return index, SearchResult(query=query, hits=hits)
