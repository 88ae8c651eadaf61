"""The fine-tuning dashboard: status, curves, speed, memory and log tail, live."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET

from lifecycle_app.catalog import selectors as catalog_selectors
from lifecycle_app.common.http import HtmxHttpRequest
from lifecycle_app.jobs.models import Job, JobKind
from lifecycle_app.projects import selectors as projects_selectors
from lifecycle_app.projects.models import Membership, Project
from lifecycle_app.stages.finetune import selectors
from lifecycle_app.stages.finetune.services import METHOD_LABELS
from lifecycle_app.teams.models import ShareLink
from workers.ml.params import DEFAULT_LEARNING_RATES
from workers.ml.training.common import FINAL_LOSS_WINDOW

ARTIFACT_LABELS = {
    "lora_adapter": "LoRA adapter",
    "prompt_adapter": "Prompt-tuning adapter",
    "model": "Full model weights",
    "dpo_adapter": "DPO LoRA adapter",
}


_FINETUNE_TITLES = {
    "run_title": "Fine-tuning",
    "step_title": "Fine-tuning",
    "step_slug": "fine-tune",
}


def dashboard_context(job: Job, *, titles: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run dashboard's context. Alignment runs use it too, with titles of their own
    (`run_title`, `step_title`, `step_slug`, `live_url` and what else their header shows)."""
    artifact = job.artifacts.first()
    summary = (job.result or {}).get("summary") or {}
    live = (job.result or {}).get("live") or {}
    return {
        "job": job,
        "curves": selectors.metric_series(job=job),
        "live": live,
        "summary": summary,
        "log": (job.result or {}).get("log") or [],
        "artifact": artifact,
        "artifact_label": ARTIFACT_LABELS.get(artifact.kind, artifact.kind) if artifact else "",
        "method_label": METHOD_LABELS.get((job.params or {}).get("method", ""), ""),
        "live_url": reverse("finetune_detail", args=[job.project.slug, job.id]),
        **(titles if titles is not None else _FINETUNE_TITLES),
        "candidate": catalog_selectors.candidate_of(job=job),
        "peak_mb": (live.get("peak_memory_bytes") or 0) / 2**20,
        "learning_rate": _learning_rate(job),
        "final_loss_window": FINAL_LOSS_WINDOW,
        "preference_caveat": _preference_caveat(job),
    }


def _learning_rate(job: Job) -> float | None:
    """The peak learning rate the run used (the method's default when none was given)."""
    params = job.params or {}
    if params.get("learning_rate"):
        return float(params["learning_rate"])
    return DEFAULT_LEARNING_RATES.get(params.get("method", ""))


def _preference_caveat(job: Job) -> str:
    """For a DPO run: what its held-out preference accuracy can mean on so few pairs."""
    from workers.ml.training.dpo import heldout_caveat

    preference = (job.result or {}).get("preference") or {}
    latest = preference.get("after") or preference.get("before") or {}
    if not latest:
        return ""
    return heldout_caveat(int(latest.get("pairs") or 0), float(latest.get("accuracy") or 0))


def dashboard_response(
    request: HtmxHttpRequest,
    *,
    project: Project,
    membership: Membership | None,
    job: Job,
    titles: dict[str, Any] | None = None,
    share: ShareLink | None = None,
) -> HttpResponse:
    """The run dashboard page, or its live fragment for the page's own polling. With
    `share`, the share link's read-only twin: it polls its own /s/ URL."""
    context = {
        "project": project,
        "membership": membership,
        **dashboard_context(job, titles=titles),
        "share": share,
    }
    if share is not None:
        context["live_url"] = request.path
    template = "finetune/detail.html"
    if request.htmx and request.htmx.target == "ft-live":
        template += "#live"
    return render(request, template, context)


@login_required
@require_GET
def finetune_detail(request: HtmxHttpRequest, slug: str, run_id: int) -> HttpResponse:
    project, membership = projects_selectors.project_get_for_user(user=request.user, slug=slug)
    job = selectors.run_get(project=project, job_id=run_id)
    if job.kind == JobKind.ALIGN:  # alignment runs have a dashboard of their own
        return redirect("align_run_detail", slug=project.slug, align_run_id=job.id)
    return dashboard_response(request, project=project, membership=membership, job=job)
