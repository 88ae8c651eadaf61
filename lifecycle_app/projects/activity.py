"""The activity feed: one row per thing a person (or a worker) did to a project.

Services record it in the same transaction as the change they describe, so the feed
never mentions a change that was rolled back, and a refused request records nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib.auth.models import User

from lifecycle_app.projects.models import Activity, ActivityVerb, Project

if TYPE_CHECKING:
    from lifecycle_app.jobs.models import Job


def activity_record(
    *,
    project: Project | int,
    actor: User | None,
    verb: ActivityVerb,
    description: str,
    job: Job | int | None = None,
) -> Activity:
    project_id = project if isinstance(project, int) else project.id
    job_id = job if isinstance(job, int) or job is None else job.id
    return Activity.objects.create(
        project_id=project_id,
        actor=actor,
        verb=verb,
        description=description[:300],
        job_id=job_id,
    )
