"""Applications: the list, a new application, versions ("Save as new version"), the
playground (answers streamed as server-sent events) and the human-fallback review list.

The playground asks the serving worker (`deploy.serving.serve_stream`) with the version's
own model folder, so it works before anything is deployed. Without JavaScript the form
posts normally and the page comes back with the whole answer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from lifecycle_app.common.http import HtmxHttpRequest, authed_user
from lifecycle_app.projects import selectors as projects_selectors
from lifecycle_app.projects.models import Membership, Project
from lifecycle_app.stages.integrate.app import selectors, services
from lifecycle_app.stages.integrate.app.candidates import (
    model_options,
    version_model_ref,
    version_unavailable,
)
from lifecycle_app.stages.integrate.app.forms import AskForm, VersionForm
from lifecycle_app.stages.integrate.app.knowledge import index_location
from lifecycle_app.stages.integrate.app.models import VERSION_FIELDS, ApplicationVersion

ANSWER_TIMEOUT_S = 180.0  # the longest wait for one event (the first includes loading the model)


def _version_form(
    request: HtmxHttpRequest,
    project: Project,
    *,
    creating: bool,
    initial: dict[str, Any] | None = None,
) -> VersionForm:
    return VersionForm(
        request.POST if request.method == "POST" else None,
        options=model_options(project=project),
        creating=creating,
        has_index=index_location(project=project) is not None,
        initial=initial,
    )


@login_required
@require_http_methods(["GET", "POST"])
def app_list(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    project, membership = projects_selectors.project_get_for_user(
        user=request.user, slug=slug, write=request.method == "POST"
    )
    form = _version_form(request, project, creating=True)
    if request.method == "POST" and form.is_valid():
        try:
            version = services.application_create(
                project=project,
                user=authed_user(request),
                name=form.cleaned_data["name"],
                option=form.option,
                fields=form.version_fields(),
            )
        except services.NameTaken as exc:
            form.add_error("name", str(exc))
        else:
            messages.success(request, f"Saved {version}.")
            return redirect("app_detail", slug=project.slug, app_id=version.application_id)
    context = {
        "project": project,
        "membership": membership,
        "apps": selectors.app_list(project=project),
        "form": form,
        "index": index_location(project=project),
        "status": selectors.integrate_status(project=project),
    }
    return render(
        request,
        "integrate/app/list.html#page" if request.htmx else "integrate/app/list.html",
        context,
    )


def _initial_from(version: ApplicationVersion) -> dict[str, Any]:
    key = (
        f"variant:{version.variant_id}"
        if version.variant_id
        else (
            f"model:{version.model_id}"
            if version.model and version.model.project_id
            else f"base:{version.model.slug}"
            if version.model
            else ""
        )
    )
    return {
        "model": key,
        **{k: getattr(version, k) for k in VERSION_FIELDS},
    }


@login_required
@require_http_methods(["GET", "POST"])
def app_detail(request: HtmxHttpRequest, slug: str, app_id: int) -> HttpResponse:
    project, membership = projects_selectors.project_get_for_user(
        user=request.user, slug=slug, write=request.method == "POST"
    )
    app = selectors.app_get(project=project, app_id=app_id)
    versions = selectors.versions_of(application=app)
    form = _version_form(
        request, project, creating=False, initial=_initial_from(versions[0]) if versions else None
    )
    if request.method == "POST" and form.is_valid():
        version = services.version_save(
            application=app,
            user=authed_user(request),
            option=form.option,
            fields=form.version_fields(),
        )
        if versions and version.id == versions[0].id:
            messages.info(request, f"Nothing changed: {version} is still the latest version.")
        else:
            messages.success(request, f"Saved {version}.")
        return redirect("app_detail", slug=project.slug, app_id=app.id)
    context = {
        "project": project,
        "membership": membership,
        "app": app,
        "versions": versions,
        "form": form,
    }
    return render(
        request,
        "integrate/app/detail.html#page" if request.htmx else "integrate/app/detail.html",
        context,
    )


def _playground_context(
    project: Project, membership: Membership, form: AskForm, versions: list[ApplicationVersion]
) -> dict[str, Any]:
    return {"project": project, "membership": membership, "form": form, "versions": versions}


@login_required
@require_GET
def app_playground(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    project, membership = projects_selectors.project_get_for_user(user=request.user, slug=slug)
    versions = selectors.project_versions(project=project)
    chosen = request.GET.get("version")
    form = AskForm(versions=versions, initial={"version": chosen} if chosen else None)
    return render(
        request,
        "integrate/app/playground.html",
        _playground_context(project, membership, form, versions),
    )


def _events(
    project: Project, version: ApplicationVersion, question: str
) -> Iterator[dict[str, Any]]:
    """The serving worker's events for one question; records a fallback question."""
    from lifecycle_app.stages.deploy.serving import serve_stream

    reason = version_unavailable(version)
    if reason:
        yield {"type": "error", "status": 409, "message": f"{version} cannot answer: {reason}"}
        return
    path = version_model_ref(version)  # resolved by the serving worker on its host
    config = selectors.version_config(version, project=project)
    payload = {
        "messages": [{"role": "user", "content": question}],
        "max_tokens": version.max_new_tokens,
        "temperature": 0.0,
        "app": {"config": config.to_dict(), "question": question},
    }
    for event in serve_stream(model_path=path, payload=payload, timeout=ANSWER_TIMEOUT_S):
        if event.get("type") == "done" and event.get("fallback"):
            services.fallback_record(
                version=version, question=question, reason=str(event.get("fallback_reason") or "")
            )
        yield event


def _sse(events: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    for event in events:
        yield f"data: {json.dumps(event)}\n\n".encode()


@login_required
@require_POST
def app_ask(request: HtmxHttpRequest, slug: str) -> HttpResponseBase:
    """Answer one question: server-sent events for the playground's script (Accept:
    text/event-stream), else the playground page with the whole answer."""
    project, membership = projects_selectors.project_get_for_user(user=request.user, slug=slug)
    versions = selectors.project_versions(project=project)
    form = AskForm(request.POST, versions=versions)
    streaming = "text/event-stream" in request.headers.get("Accept", "")
    if not form.is_valid():
        if streaming:
            errors = "; ".join(str(e) for errs in form.errors.values() for e in errs)
            return HttpResponse(
                f"data: {json.dumps({'type': 'error', 'status': 400, 'message': errors})}\n\n",
                content_type="text/event-stream",
                status=400,
            )
        return render(
            request,
            "integrate/app/playground.html",
            _playground_context(project, membership, form, versions),
            status=200,
        )
    version = selectors.version_get(project=project, version_id=int(form.cleaned_data["version"]))
    events = _events(project, version, form.cleaned_data["question"])
    if streaming:
        response = StreamingHttpResponse(_sse(events), content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # a proxy must not hold the stream back
        return response
    result: dict[str, Any] = {"hits": [], "prompt": "", "text": "", "done": None, "error": None}
    for event in events:
        kind = event.get("type")
        if kind == "retrieval":
            result["hits"] = event.get("hits", [])
        elif kind == "prompt":
            result["prompt"] = event.get("text", "")
        elif kind == "delta":
            result["text"] += event.get("text", "")
        elif kind == "done":
            result["done"] = event
        elif kind == "error":
            result["error"] = event.get("message", "The answer failed.")
    context = _playground_context(project, membership, form, versions)
    context["result"] = result
    return render(request, "integrate/app/playground.html", context)


@login_required
@require_GET
def fallback_list(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    project, membership = projects_selectors.project_get_for_user(user=request.user, slug=slug)
    show_all = request.GET.get("show") == "all"
    items = selectors.fallback_list(project=project, waiting=not show_all)
    context = {"project": project, "membership": membership, "items": items, "show_all": show_all}
    return render(
        request,
        "integrate/app/fallback.html#page" if request.htmx else "integrate/app/fallback.html",
        context,
    )


@login_required
@require_POST
def fallback_handled(request: HtmxHttpRequest, slug: str, item_id: int) -> HttpResponse:
    project, membership = projects_selectors.project_get_for_user(
        user=request.user, slug=slug, write=True
    )
    item = selectors.fallback_get(project=project, item_id=item_id)
    services.fallback_mark_handled(
        item=item, user=authed_user(request), note=request.POST.get("note", "")
    )
    if request.htmx:
        items = selectors.fallback_list(project=project)
        context = {"project": project, "membership": membership, "items": items, "show_all": False}
        return render(request, "integrate/app/fallback.html#page", context)
    messages.success(request, "Marked as handled.")
    return redirect("app_fallback", slug=project.slug)


@login_required
@require_POST
def version_deploy(request: HtmxHttpRequest, slug: str, version_id: int) -> HttpResponse:
    project, _ = projects_selectors.project_get_for_user(user=request.user, slug=slug, write=True)
    version = selectors.version_get(project=project, version_id=version_id)
    services.version_deploy(version=version, user=authed_user(request))
    messages.success(
        request, f"The project's API now answers with {version}: its model, template and retrieval."
    )
    return redirect("app_detail", slug=project.slug, app_id=version.application_id)
