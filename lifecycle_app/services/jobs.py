"""Job lifecycle: create and enqueue, claim, progress, finish, cancel, reap.

Design note. The Job row is the source of truth; Celery only carries the job id.
- Enqueueing happens in `transaction.on_commit`, so a worker never looks for a row
  that is not committed yet. A broker that cannot be reached fails the job loudly.
- A worker claims a job with a guarded UPDATE (`status=queued -> running`). A duplicate
  delivery finds nothing to update and returns; a redelivery after a worker died may
  take over a running job only when its heartbeat is stale.
- Cancel of a queued job is immediate (the guarded claim then finds nothing). Cancel of
  a running job sets `cancel_requested_at`; the worker checks it every generation step
  and records "cancelled" itself.
- The reaper fails running jobs whose heartbeat stopped, with a reason a person can act on.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from lifecycle_app.models import (
    BaseModel,
    Dataset,
    GenerationOutput,
    Job,
    JobKind,
    JobStatus,
    Project,
    StageKey,
)
from lifecycle_app.services.projects import stage_step_save
from workers.ml.params import GenerateParams

logger = logging.getLogger(__name__)

# kind -> Celery task name (each kind has its own task and time limits).
TASK_FOR_KIND = {
    JobKind.GENERATE: "jobs.generate",
    JobKind.PROFILE: "jobs.profile",
    JobKind.REGISTER_MODEL: "jobs.register_model",
    JobKind.TRIAL: "jobs.trial",
}


def queue_for(kind: str) -> str:
    return "gpu" if settings.GPU_QUEUE else "cpu"


def _enqueue(job_id: int) -> None:
    from workers.celery import app

    job = Job.objects.get(id=job_id)
    try:
        app.send_task(TASK_FOR_KIND[JobKind(job.kind)], args=[job.id], queue=job.queue)
    except Exception as exc:  # the broker is down: fail loudly, never run inline
        logger.exception("Could not enqueue job %s", job.id)
        job_fail(
            job_id=job.id,
            error=(
                "The job queue could not be reached, so the job was not started. "
                f"Check that the broker is running and try again. ({type(exc).__name__})"
            ),
        )


def enqueue_on_commit(job_id: int) -> None:
    """Send the job's task once the surrounding transaction has committed its row."""
    transaction.on_commit(lambda: _enqueue(job_id))


def job_create_generate(
    *, project: Project, user: User, base_model: BaseModel, params: GenerateParams
) -> Job:
    with transaction.atomic():
        job = Job.objects.create(
            project=project,
            kind=JobKind.GENERATE,
            base_model=base_model,
            params=params.model_dump(),
            queue=queue_for(JobKind.GENERATE),
            progress_total=params.max_new_tokens,
            progress_unit="tokens",
            message="Waiting for a worker",
            created_by=user,
        )
        GenerationOutput.objects.create(job=job, index=0, prompt=params.prompt)
        stage_step_save(
            project=project,
            stage_key=StageKey.ADAPT,
            step_slug="prompt",
            answers={"last_params": params.model_dump(), "last_job": job.id},
        )
        enqueue_on_commit(job.id)
    return job


def job_create_profile(
    *, project: Project, user: User, dataset: Dataset, base_model: BaseModel
) -> Job:
    """Token-length profile of a dataset with `base_model`'s tokenizer (runs on a worker)."""
    with transaction.atomic():
        job = Job.objects.create(
            project=project,
            kind=JobKind.PROFILE,
            base_model=base_model,
            dataset=dataset,
            params={"dataset_id": dataset.id, "model_ref": base_model.slug},
            queue=queue_for(JobKind.PROFILE),
            progress_total=dataset.valid_rows,
            progress_unit="rows",
            message="Waiting for a worker",
            created_by=user,
        )
        enqueue_on_commit(job.id)
    return job


def job_cancel(*, job: Job) -> Job:
    now = timezone.now()
    updated = Job.objects.filter(id=job.id, status=JobStatus.QUEUED).update(
        status=JobStatus.CANCELLED,
        cancel_requested_at=now,
        finished_at=now,
        message="Cancelled before it started",
    )
    if not updated:
        Job.objects.filter(
            id=job.id, status=JobStatus.RUNNING, cancel_requested_at__isnull=True
        ).update(cancel_requested_at=now, message="Cancelling…")
    job.refresh_from_db()
    return job


def job_claim(*, job_id: int, worker: str) -> Job | None:
    """Take a job for this worker, or return None if it is not ours to run."""
    now = timezone.now()
    fields: dict[str, Any] = {
        "status": JobStatus.RUNNING,
        "started_at": now,
        "heartbeat_at": now,
        "worker": worker[:200],
        "attempt": F("attempt") + 1,
        "message": "Starting",
    }
    claimed = Job.objects.filter(id=job_id, status=JobStatus.QUEUED).update(**fields)
    if not claimed:
        stale = now - timedelta(seconds=settings.JOB_STALE_AFTER_S)
        claimed = Job.objects.filter(
            id=job_id, status=JobStatus.RUNNING, heartbeat_at__lt=stale
        ).update(
            **{**fields, "started_at": F("started_at"), "message": "Resuming after a lost worker"}
        )
    if not claimed:
        return None
    return Job.objects.select_related("base_model", "dataset").get(id=job_id)


def job_heartbeat(*, job_id: int) -> None:
    Job.objects.filter(id=job_id, status=JobStatus.RUNNING).update(heartbeat_at=timezone.now())


def job_cancel_requested(*, job_id: int) -> bool:
    return Job.objects.filter(id=job_id, cancel_requested_at__isnull=False).exists()


def job_progress(*, job_id: int, done: int, total: int, message: str = "") -> None:
    Job.objects.filter(id=job_id, status=JobStatus.RUNNING).update(
        progress_done=done,
        progress_total=total,
        message=message[:300],
        heartbeat_at=timezone.now(),
    )


def _finish(job_id: int, status: JobStatus, **fields: Any) -> None:
    now = timezone.now()
    Job.objects.filter(id=job_id).exclude(
        status__in=[JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED]
    ).update(status=status, finished_at=now, heartbeat_at=now, **fields)


def job_succeed(*, job_id: int, result: dict[str, Any], message: str = "Done") -> None:
    with transaction.atomic():
        _finish(job_id, JobStatus.SUCCEEDED, result=result, message=message)
        job = Job.objects.select_related("project").get(id=job_id)
        if job.kind == JobKind.TRIAL and job.status == JobStatus.SUCCEEDED:
            stage_step_save(
                project=job.project,
                stage_key=StageKey.ADAPT,
                step_slug="prompt",
                answers={"succeeded_trial": job.id},
            )


def job_fail(*, job_id: int, error: str, traceback: str = "") -> None:
    _finish(job_id, JobStatus.FAILED, error=error, traceback=traceback, message="Failed")


def job_mark_cancelled(*, job_id: int, result: dict[str, Any] | None = None) -> None:
    _finish(job_id, JobStatus.CANCELLED, result=result or {}, message="Cancelled")


def generation_output_update(*, job_id: int, index: int, **fields: Any) -> None:
    GenerationOutput.objects.filter(job_id=job_id, index=index).update(**fields)


def job_reap_stale() -> int:
    """Fail running jobs whose worker stopped sending heartbeats. Returns how many."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.JOB_STALE_AFTER_S)
    lost = Job.objects.filter(status=JobStatus.RUNNING).filter(
        Q(heartbeat_at__lt=stale) | Q(heartbeat_at__isnull=True, started_at__lt=stale)
    )
    count = lost.update(
        status=JobStatus.FAILED,
        finished_at=now,
        message="Failed",
        error=(
            f"The worker running this job stopped responding (no heartbeat for over "
            f"{settings.JOB_STALE_AFTER_S} s): it was probably stopped or ran out of "
            "memory. Start the job again."
        ),
    )
    if count:
        logger.warning("Reaped %s job(s) with a stale heartbeat", count)
    return count
