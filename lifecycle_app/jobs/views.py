"""The job dashboards: all jobs, a project's jobs, one job's live status, cancel."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from lifecycle_app.common.http import HtmxHttpRequest, authed_user
from lifecycle_app.jobs import selectors
from lifecycle_app.jobs.models import JobKind, JobStatus
from lifecycle_app.jobs.services import job_cancel
from lifecycle_app.projects import selectors as projects_selectors
from lifecycle_app.projects.models import Project
from lifecycle_app.teams.models import ShareLink


def _filters(request: HtmxHttpRequest) -> tuple[str | None, str | None]:
    status = request.GET.get("status") or None
    kind = request.GET.get("kind") or None
    # Unknown values filter nothing rather than erroring: the form only offers valid ones.
    if status not in JobStatus.values:
        status = None
    if kind not in JobKind.values:
        kind = None
    return status, kind


def job_list_response(
    request: HtmxHttpRequest, *, project: Project | None, share: ShareLink | None = None
) -> HttpResponse:
    """A job dashboard: one project's jobs, or (no project) all of the user's projects'."""
    status, kind = _filters(request)
    user = None if project is not None else authed_user(request)
    jobs = selectors.job_list(user=user, project=project, status=status, kind=kind)
    context = {
        "project": project,
        "share": share,
        "jobs": jobs,
        "polling": selectors.any_active(jobs),
        "status": status or "",
        "kind": kind or "",
        "statuses": JobStatus.choices,
        "kinds": JobKind.choices,
    }
    template = "jobs/list.html"
    if request.htmx and not request.htmx.history_restore_request:
        template += "#table"
    return render(request, template, context)


@login_required
@require_GET
def all_jobs(request: HtmxHttpRequest) -> HttpResponse:
    return job_list_response(request, project=None)


@login_required
@require_GET
def project_jobs(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    project, _ = projects_selectors.project_get_for_user(user=request.user, slug=slug)
    return job_list_response(request, project=project)


@login_required
@require_GET
def job_detail(request: HtmxHttpRequest, slug: str, job_id: int) -> HttpResponse:
    project, membership = projects_selectors.project_get_for_user(user=request.user, slug=slug)
    job = selectors.job_get_for_user(project=project, job_id=job_id)
    if job.kind == JobKind.TRIAL:  # a trial's page shows its rows and scores
        return redirect("trial_detail", slug=project.slug, trial_id=job.id)
    if job.kind == JobKind.FINETUNE:  # a run's page is its live dashboard
        return redirect("finetune_detail", slug=project.slug, run_id=job.id)
    context = {"project": project, "membership": membership, "job": job}
    return render(request, "jobs/detail.html", context)


@login_required
@require_GET
def job_status(request: HtmxHttpRequest, slug: str, job_id: int) -> HttpResponse:
    """The self-replacing status fragment (polls while the job is active)."""
    project, membership = projects_selectors.project_get_for_user(user=request.user, slug=slug)
    job = selectors.job_get_for_user(project=project, job_id=job_id)
    return render(
        request, "jobs/_job_status.html", {"project": project, "membership": membership, "job": job}
    )


@login_required
@require_POST
def job_cancel_view(request: HtmxHttpRequest, slug: str, job_id: int) -> HttpResponse:
    project, membership = projects_selectors.project_get_for_user(
        user=request.user, slug=slug, write=True
    )
    job = job_cancel(
        job=selectors.job_get_for_user(project=project, job_id=job_id), actor=authed_user(request)
    )
    if request.htmx:
        return render(
            request,
            "jobs/_job_status.html",
            {"project": project, "membership": membership, "job": job},
        )
    return redirect("job_detail", slug=project.slug, job_id=job.id)
