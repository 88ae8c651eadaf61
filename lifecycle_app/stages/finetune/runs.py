"""Run bookkeeping shared by the training stages (fine-tuning, alignment): the run folder,
metric points, live figures and the log tail."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from lifecycle_app.jobs import services as job_services
from lifecycle_app.jobs.models import Job, JobStatus, MetricPoint
from lifecycle_app.stages.finetune.services import LOG_TAIL


def metric_record(*, job_id: int, step: int, values: dict[str, float]) -> None:
    """Store curve points; a resumed run writing a step again replaces its value."""
    for name, value in values.items():
        MetricPoint.objects.update_or_create(
            job_id=job_id, name=name, step=step, defaults={"value": float(value)}
        )


def finetune_live(*, job_id: int, step: int, total: int, live: dict[str, Any], line: str) -> None:
    """The dashboard's live figures and log tail, and measured progress (steps)."""
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(id=job_id, status=JobStatus.RUNNING).first()
        if job is None:
            return
        result = dict(job.result or {})
        result["live"] = live
        result["log"] = [*(result.get("log") or []), line][-LOG_TAIL:]
        Job.objects.filter(id=job_id).update(
            result=result,
            progress_done=job_services.progress_done_expression(done=step, total=total),
            progress_total=total,
            message=line[:300],
            heartbeat_at=timezone.now(),
        )


def finetune_log(*, job_id: int, line: str) -> None:
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(id=job_id).first()
        if job is None:
            return
        result = dict(job.result or {})
        result["log"] = [*(result.get("log") or []), line][-LOG_TAIL:]
        Job.objects.filter(id=job_id).update(result=result)


def run_result_merge(*, job_id: int, key: str, values: dict[str, Any]) -> None:
    """Merge `values` into the job's `result[key]` under the row lock (no lost update)."""
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(id=job_id).first()
        if job is None:
            return
        result = dict(job.result or {})
        result[key] = {**(result.get(key) or {}), **values}
        Job.objects.filter(id=job_id).update(result=result)
