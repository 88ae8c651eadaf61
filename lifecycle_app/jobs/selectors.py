"""Job reads: one job for a project member, job lists for the dashboards."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.http import Http404

from lifecycle_app.jobs.models import ACTIVE_STATUSES, Job
from lifecycle_app.projects.models import Project
from lifecycle_app.projects.selectors import MAX_ID


def job_get_for_user(*, project: Project, job_id: int) -> Job:
    if not 0 < job_id <= MAX_ID:
        raise Http404("No such job.")
    job = (
        Job.objects.select_related("created_by", "base_model", "project")
        .filter(project=project, id=job_id)
        .first()
    )
    if job is None:
        raise Http404("No such job.")
    return job


def job_list(
    *,
    user: User | None = None,
    project: Project | None = None,
    status: str | None = None,
    kind: str | None = None,
    limit: int = 200,
) -> list[Job]:
    jobs = Job.objects.select_related("project", "created_by", "base_model")
    if project is not None:
        jobs = jobs.filter(project=project)
    elif user is not None:
        jobs = jobs.filter(project__memberships__user=user)
    else:
        raise ValueError("job_list needs a project or a user")
    if status:
        jobs = jobs.filter(status=status)
    if kind:
        jobs = jobs.filter(kind=kind)
    return list(jobs.order_by("-created_at", "-id")[:limit])


def any_active(jobs: list[Job]) -> bool:
    return any(job.status in ACTIVE_STATUSES for job in jobs)


def latest_job_for_step(*, project: Project, kind: str) -> Job | None:
    return (
        Job.objects.select_related("created_by", "base_model", "project")
        .filter(project=project, kind=kind)
        .order_by("-created_at", "-id")
        .first()
    )
