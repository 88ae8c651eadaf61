"""The fine-tuning dashboard: status, curves, speed, memory and log tail, live."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from lifecycle_app import selectors
from lifecycle_app.models import Job, JobKind, PreferenceSet
from lifecycle_app.services.finetune import METHOD_LABELS
from lifecycle_app.views.common import HtmxHttpRequest

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


def _align_context(job: Job) -> dict[str, Any]:
    set_id = (job.params or {}).get("preference_set_id") or 0
    return {
        "run_title": "Alignment",
        "step_title": "Align with human feedback",
        "step_slug": "align",
        "preference_set": PreferenceSet.objects.filter(id=set_id, project=job.project_id).first(),
    }


def dashboard_context(job: Job) -> dict[str, Any]:
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
        **(_align_context(job) if job.kind == JobKind.ALIGN else _FINETUNE_TITLES),
        "candidate": selectors.candidate_of(job=job),
        "peak_mb": (live.get("peak_memory_bytes") or 0) / 2**20,
    }


@login_required
@require_GET
def finetune_detail(request: HtmxHttpRequest, slug: str, run_id: int) -> HttpResponse:
    project, membership = selectors.project_get_for_user(user=request.user, slug=slug)
    job = selectors.finetune_get(project=project, job_id=run_id)
    context = {"project": project, "membership": membership, **dashboard_context(job)}
    template = "finetune/detail.html"
    if request.htmx and request.htmx.target == "ft-live":  # the page's own polling
        template += "#live"
    return render(request, template, context)
