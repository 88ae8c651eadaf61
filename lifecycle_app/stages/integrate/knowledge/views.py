"""The Knowledge base page: documents, the index and its build, a test search."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.template.defaultfilters import filesizeformat
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from lifecycle_app.common.http import HtmxHttpRequest, authed_user
from lifecycle_app.common.uploads import SizeLimitedUploadHandler, size_limited_upload
from lifecycle_app.jobs.services import JobLimitReached
from lifecycle_app.projects import selectors as projects_selectors
from lifecycle_app.projects.models import Membership, Project
from lifecycle_app.stages.integrate.knowledge import selectors
from lifecycle_app.stages.integrate.knowledge import services as knowledge_services
from lifecycle_app.stages.integrate.knowledge.forms import (
    DocumentUploadForm,
    IndexForm,
    SearchForm,
)
from workers.ml.retrieval.documents import DocumentRejected
from workers.ml.retrieval.index import RRF_K

PAGE = "integrate/knowledge/page.html"


def _status_context(project: Project, membership: Membership) -> dict[str, Any]:
    current = selectors.knowledge_index_current(project=project)
    latest = selectors.knowledge_index_latest(project=project)
    return {
        "project": project,
        "membership": membership,
        "current": current,
        "latest": latest,
        "stale": selectors.knowledge_is_stale(project=project, index=current),
        "building": latest is not None and latest.job is not None and latest.job.is_active,
    }


def _page_context(project: Project, membership: Membership, **extra: Any) -> dict[str, Any]:
    context = _status_context(project, membership)
    tokenizer = selectors.knowledge_default_tokenizer(project=project)
    current = context["current"]
    initial = {"tokenizer_model": tokenizer}
    if current is not None:
        initial = {
            "tokenizer_model": current.tokenizer_model or tokenizer,
            "chunk_size": current.chunk_size,
            "chunk_overlap": current.chunk_overlap,
        }
    return {
        **context,
        "documents": selectors.knowledge_document_list(project=project),
        "upload_form": DocumentUploadForm(),
        "index_form": IndexForm(initial=initial, project=project),
        "search_form": SearchForm(),
        "max_size": filesizeformat(settings.DATASET_MAX_BYTES),
        "rrf_k": RRF_K,
        **extra,
    }


@login_required
@require_GET
def knowledge_base(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    project, membership = projects_selectors.project_get_for_user(user=request.user, slug=slug)
    return render(request, PAGE, _page_context(project, membership))


@login_required
@require_GET
def knowledge_index_status(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    project, membership = projects_selectors.project_get_for_user(user=request.user, slug=slug)
    return render(request, f"{PAGE}#index-status", _status_context(project, membership))


@login_required
@require_POST
@size_limited_upload
def knowledge_upload(
    request: HtmxHttpRequest, slug: str, size_limit: SizeLimitedUploadHandler
) -> HttpResponse:
    project, membership = projects_selectors.project_get_for_user(
        user=request.user, slug=slug, write=True
    )
    form = DocumentUploadForm(request.POST, request.FILES)
    rejection: DocumentRejected | None = None
    if size_limit.too_large:
        form = DocumentUploadForm({})
        form.is_valid()
        form.errors.clear()  # the body was discarded: say only why
        form.add_error(
            "file",
            f"The file is larger than the {filesizeformat(settings.DATASET_MAX_BYTES)} limit "
            "and was not stored. Split it, or raise LIFECYCLE_DATASET_MAX_BYTES.",
        )
    elif form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            document = knowledge_services.knowledge_document_upload(
                project=project,
                user=authed_user(request),
                path=Path(upload.temporary_file_path()),
                filename=upload.name or "document",
                text_field=form.cleaned_data["text_field"] or "text",
            )
        except DocumentRejected as exc:
            rejection = exc
        else:
            messages.success(request, f"Added {document.name}. Re-index to make it searchable.")
            return redirect("knowledge_base", slug=project.slug)
    points = [p.message for p in rejection.problems][:20] if rejection else []
    context = _page_context(
        project, membership, upload_form=form, rejection=rejection, rejection_points=points
    )
    return render(request, PAGE, context)


@login_required
@require_http_methods(["GET", "POST"])
def knowledge_remove(request: HtmxHttpRequest, slug: str, document_id: int) -> HttpResponse:
    project, membership = projects_selectors.project_get_for_user(
        user=request.user, slug=slug, write=True
    )
    document = selectors.knowledge_document_get(project=project, document_id=document_id)
    if request.method == "GET":
        context = {"project": project, "membership": membership, "document": document}
        return render(request, "integrate/knowledge/remove.html", context)
    name = document.name
    try:
        job = knowledge_services.knowledge_document_remove(
            document=document, user=authed_user(request)
        )
    except JobLimitReached as exc:
        messages.warning(request, f"Removed {name}; the index is stale and not rebuilt: {exc}")
    else:
        messages.success(
            request,
            f"Removed {name}." + (" The index is being rebuilt without it." if job else ""),
        )
    return redirect("knowledge_base", slug=project.slug)


@login_required
@require_POST
def knowledge_index_build(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    project, membership = projects_selectors.project_get_for_user(
        user=request.user, slug=slug, write=True
    )
    form = IndexForm(request.POST, project=project)
    error = ""
    if form.is_valid():
        try:
            knowledge_services.knowledge_index_start(
                project=project,
                user=authed_user(request),
                tokenizer_model=form.cleaned_data["tokenizer_model"],
                chunk_size=form.cleaned_data["chunk_size"],
                chunk_overlap=form.cleaned_data["chunk_overlap"],
            )
        except (JobLimitReached, ValueError) as exc:
            error = str(exc)
        else:
            return redirect("knowledge_base", slug=project.slug)
    context = _page_context(project, membership, index_form=form, index_error=error)
    return render(request, PAGE, context)


@login_required
@require_GET
def knowledge_search(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    project, membership = projects_selectors.project_get_for_user(user=request.user, slug=slug)
    form = SearchForm(request.GET)
    result = None
    if form.is_valid():
        _, result = selectors.knowledge_search(project=project, query=form.cleaned_data["q"])
    context = _page_context(project, membership, search_form=form, search=result)
    if request.htmx:
        return render(request, f"{PAGE}#search-results", context)
    return render(request, PAGE, context)
