"""Read-only share pages under /s/<share_token>/: no login, no controls, no downloads.

`teams_selectors.share_link_get_active` is the access helper of every view here: an unknown,
revoked or expired token is a 404, and a link opens only its own project's read-only pages:
the overview, wizard steps, job dashboards, prompt trials (table, one trial, side by side),
fine-tuning and alignment run dashboards with their curves, the scorecard and an
evaluation's side by side. Objects are looked up within that project, so another
project's job id is a 404 too. The pages reuse the member templates with `share` set;
the `project_url` template tag turns their links into /s/ links and refuses (loudly)
to build a link that has no read-only counterpart.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET

from lifecycle_app.common.http import HtmxHttpRequest
from lifecycle_app.jobs import selectors as jobs_selectors
from lifecycle_app.jobs.models import JobKind
from lifecycle_app.jobs.views import job_list_response
from lifecycle_app.projects import steps
from lifecycle_app.stages.align import selectors as align_selectors
from lifecycle_app.stages.evaluate import selectors as evaluate_selectors
from lifecycle_app.stages.evaluate.views import compare_response, scorecard_response
from lifecycle_app.stages.finetune import selectors as finetune_selectors
from lifecycle_app.stages.finetune.views import dashboard_response
from lifecycle_app.stages.prompt import selectors as prompt_selectors
from lifecycle_app.stages.prompt.views import (
    trial_compare_response,
    trial_detail_response,
    trial_list_response,
)
from lifecycle_app.teams import selectors as teams_selectors
from lifecycle_app.wizard.context import overview_context
from lifecycle_app.wizard.views import read_only_step

View = Callable[..., HttpResponse]


def share_page(view: View) -> View:
    """GET only; and headers that keep the token out of caches, referrers and indexes."""

    @require_GET
    @wraps(view)
    def wrapper(request: HtmxHttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = view(request, *args, **kwargs)
        response["Cache-Control"] = "no-store"
        response["Referrer-Policy"] = "no-referrer"
        response["X-Robots-Tag"] = "noindex, nofollow"
        return response

    return wrapper


@share_page
def share_project(request: HtmxHttpRequest, share_token: str) -> HttpResponse:
    link = teams_selectors.share_link_get_active(token=share_token)
    context = overview_context(project=link.project, membership=None)
    context["share"] = link
    template = "projects/detail.html"
    if request.htmx and not request.htmx.history_restore_request:
        template += "#overview"
    return render(request, template, context)


@share_page
def share_step(request: HtmxHttpRequest, share_token: str, stage: str, step: str) -> HttpResponse:
    link = teams_selectors.share_link_get_active(token=share_token)
    step_def = steps.step_def(stage, step)
    if step_def is None:
        new = steps.RENAMED_SLUGS.get((stage, step))
        if new is not None:
            return redirect("share_step", share_token, stage, new, permanent=True)
        raise Http404("No such step.")
    return read_only_step(request, project=link.project, step_def=step_def, share=link)


@share_page
def share_jobs(request: HtmxHttpRequest, share_token: str) -> HttpResponse:
    link = teams_selectors.share_link_get_active(token=share_token)
    return job_list_response(request, project=link.project, share=link)


@share_page
def share_job(request: HtmxHttpRequest, share_token: str, job_id: int) -> HttpResponse:
    link = teams_selectors.share_link_get_active(token=share_token)
    job = jobs_selectors.job_get_for_user(project=link.project, job_id=job_id)
    context = {"project": link.project, "membership": None, "job": job, "share": link}
    return render(request, "jobs/detail.html", context)


@share_page
def share_job_status(request: HtmxHttpRequest, share_token: str, job_id: int) -> HttpResponse:
    """The self-replacing status fragment, polling /s/ URLs while the job is active."""
    link = teams_selectors.share_link_get_active(token=share_token)
    job = jobs_selectors.job_get_for_user(project=link.project, job_id=job_id)
    context = {"project": link.project, "membership": None, "job": job, "share": link}
    return render(request, "jobs/_job_status.html", context)


@share_page
def share_scorecard(request: HtmxHttpRequest, share_token: str) -> HttpResponse:
    link = teams_selectors.share_link_get_active(token=share_token)
    job = evaluate_selectors.evaluation_latest(project=link.project)
    return scorecard_response(request, project=link.project, membership=None, job=job, share=link)


@share_page
def share_evaluation(request: HtmxHttpRequest, share_token: str, eval_id: int) -> HttpResponse:
    link = teams_selectors.share_link_get_active(token=share_token)
    job = evaluate_selectors.evaluation_get(project=link.project, job_id=eval_id)
    return scorecard_response(request, project=link.project, membership=None, job=job, share=link)


@share_page
def share_evaluation_compare(
    request: HtmxHttpRequest, share_token: str, eval_id: int
) -> HttpResponse:
    link = teams_selectors.share_link_get_active(token=share_token)
    job = evaluate_selectors.evaluation_get(project=link.project, job_id=eval_id)
    return compare_response(request, project=link.project, membership=None, job=job, share=link)


@share_page
def share_trials(request: HtmxHttpRequest, share_token: str) -> HttpResponse:
    link = teams_selectors.share_link_get_active(token=share_token)
    return trial_list_response(request, project=link.project, membership=None, share=link)


@share_page
def share_trial(request: HtmxHttpRequest, share_token: str, trial_id: int) -> HttpResponse:
    link = teams_selectors.share_link_get_active(token=share_token)
    job = prompt_selectors.trial_get(project=link.project, job_id=trial_id)
    return trial_detail_response(
        request, project=link.project, membership=None, job=job, share=link
    )


@share_page
def share_trial_compare(request: HtmxHttpRequest, share_token: str) -> HttpResponse:
    link = teams_selectors.share_link_get_active(token=share_token)
    return trial_compare_response(request, project=link.project, membership=None, share=link)


@share_page
def share_finetune(request: HtmxHttpRequest, share_token: str, run_id: int) -> HttpResponse:
    link = teams_selectors.share_link_get_active(token=share_token)
    job = finetune_selectors.run_get(project=link.project, job_id=run_id)
    if job.kind == JobKind.ALIGN:
        return redirect("share_align_run", share_token, job.id)
    return dashboard_response(request, project=link.project, membership=None, job=job, share=link)


@share_page
def share_align_run(request: HtmxHttpRequest, share_token: str, align_run_id: int) -> HttpResponse:
    link = teams_selectors.share_link_get_active(token=share_token)
    job = finetune_selectors.run_get(
        project=link.project, job_id=align_run_id, kinds=(JobKind.ALIGN,)
    )
    titles = {
        "run_title": "Alignment",
        "step_title": "Align with human feedback",
        "step_slug": steps.StepSlug.ALIGN,
        "preference_set": align_selectors.preference_set_of(job=job),
    }
    return dashboard_response(
        request, project=link.project, membership=None, job=job, titles=titles, share=link
    )
