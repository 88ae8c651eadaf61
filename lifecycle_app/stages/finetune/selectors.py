"""Fine-tuning reads: a run and its curves."""

from __future__ import annotations

from django.http import Http404

from lifecycle_app.jobs.models import Job, JobKind, MetricPoint
from lifecycle_app.projects.models import Project
from lifecycle_app.projects.selectors import MAX_ID

TRAINING_KINDS = (JobKind.FINETUNE, JobKind.ALIGN)


def run_get(*, project: Project, job_id: int, kinds: tuple[str, ...] = TRAINING_KINDS) -> Job:
    """A training run (fine-tuning or alignment, or only `kinds`) of the project, else 404."""
    if not 0 < job_id <= MAX_ID:
        raise Http404("No such run.")
    job = (
        Job.objects.select_related("base_model", "dataset", "created_by", "project")
        .filter(project=project, id=job_id, kind__in=kinds)
        .first()
    )
    if job is None:
        raise Http404("No such run.")
    return job


def metric_series(*, job: Job) -> dict[str, list[list[float]]]:
    """Each curve of a job as [[step, value], ...] in step order."""
    series: dict[str, list[list[float]]] = {}
    points = MetricPoint.objects.filter(job=job).order_by("name", "step")
    for name, step, value in points.values_list("name", "step", "value"):
        series.setdefault(name, []).append([step, value])
    return series
