"""Optimize and deploy: deploy a variant, download its bundle, create and revoke API
tokens. The step page itself is the wizard's (wizard/optimize.html)."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseLocation

from lifecycle_app import storage
from lifecycle_app.common.http import HtmxHttpRequest, authed_user
from lifecycle_app.projects import selectors as projects_selectors
from lifecycle_app.projects.models import StageKey
from lifecycle_app.projects.steps import StepSlug
from lifecycle_app.stages.deploy import selectors
from lifecycle_app.stages.deploy import services as deploy_services

NEW_TOKEN_SESSION_KEY = "lifecycle_new_api_token"


def _back(request: HtmxHttpRequest, slug: str, anchor: str = "") -> HttpResponse:
    target = reverse("wizard_step", args=[slug, StageKey.INTEGRATE.value, StepSlug.DEPLOY]) + anchor
    if request.htmx:
        return HttpResponseLocation(target, target="#wizard", swap="outerHTML")
    return redirect(target)


@login_required
@require_POST
def variant_deploy(request: HtmxHttpRequest, slug: str, variant_id: int) -> HttpResponse:
    project, _ = projects_selectors.project_get_for_user(user=request.user, slug=slug, write=True)
    variant = selectors.variant_get(project=project, variant_id=variant_id)
    if not variant.servable:
        raise Http404("This variant cannot be served.")
    deploy_services.variant_deploy(project=project, variant=variant, actor=authed_user(request))
    return _back(request, slug, "#tradeoff")


@login_required
@require_GET
def variant_download(
    request: HtmxHttpRequest, slug: str, variant_id: int
) -> FileResponse | HttpResponse:
    project, _ = projects_selectors.project_get_for_user(user=request.user, slug=slug)
    variant = selectors.variant_get(project=project, variant_id=variant_id)
    if not variant.bundle_path:
        raise Http404("This variant has no download bundle.")
    name = f"{project.slug}-{variant.kind}-{variant.job_id}.zip"
    # Streamed in chunks from the artifact store (an absolute path: the local disk, as
    # written before the store existed); never read into memory.
    stream: BinaryIO
    try:
        if Path(variant.bundle_path).is_absolute():
            stream = Path(variant.bundle_path).open("rb")  # noqa: SIM115 - FileResponse closes it
        else:
            stream = storage.store().open(variant.bundle_path)
    except (FileNotFoundError, storage.StoreMissing) as exc:
        raise Http404("This variant has no download bundle.") from exc
    except storage.StoreError as exc:
        return HttpResponse(str(exc), status=503, content_type="text/plain")
    return FileResponse(stream, as_attachment=True, filename=name)


@login_required
@require_POST
def api_token_create(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    project, _ = projects_selectors.project_get_for_user(user=request.user, slug=slug, manage=True)
    name = str(request.POST.get("name", ""))[:80]
    token, raw = deploy_services.api_token_create(
        project=project, actor=authed_user(request), name=name
    )
    # Shown once, on the next page view, then gone (only its hash is stored).
    request.session[NEW_TOKEN_SESSION_KEY] = {"id": token.id, "raw": raw}
    return _back(request, slug, "#api")


@login_required
@require_POST
def api_token_revoke(request: HtmxHttpRequest, slug: str, token_id: int) -> HttpResponse:
    project, _ = projects_selectors.project_get_for_user(user=request.user, slug=slug, manage=True)
    token = selectors.api_token_get(project=project, token_id=token_id)
    deploy_services.api_token_revoke(token=token, actor=authed_user(request))
    return _back(request, slug, "#api")
