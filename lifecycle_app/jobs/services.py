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
- Every job is created by `job_create`, the one place that enforces the submission limits
  (queued + running jobs per user and per project) and records "started" in the activity
  feed; a new job kind gets both by calling it. The user's and the project's rows are
  locked while counting, so two submissions at once cannot both take the last slot.
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

from lifecycle_app.jobs.models import ACTIVE_STATUSES, Job, JobKind, JobStatus
from lifecycle_app.projects.activity import activity_record
from lifecycle_app.projects.models import ActivityVerb, Project

logger = logging.getLogger(__name__)

# kind -> Celery task name (each kind has its own task and time limits).
TASK_FOR_KIND = {
    JobKind.GENERATE: "jobs.generate",
    JobKind.PROFILE: "jobs.profile",
    JobKind.REGISTER_MODEL: "jobs.register_model",
    JobKind.TRIAL: "jobs.trial",
    JobKind.FINETUNE: "jobs.finetune",
    JobKind.EVALUATE: "jobs.evaluate",
    JobKind.ALIGN: "jobs.align",
    JobKind.EXPORT: "jobs.export",
}


def _queue_for(kind: str) -> str:
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


class JobLimitReached(Exception):
    """Too many queued or running jobs; the message is for the person who submitted."""


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def job_limits_check(*, project: Project, user: User) -> None:
    """Raise JobLimitReached when `user` or `project` may not start another job now.

    Limits count queued and running jobs (settings JOB_LIMIT_ACTIVE_PER_USER, across all
    the user's projects, and JOB_LIMIT_ACTIVE_PER_PROJECT); 0 means no limit. Inside a
    transaction, call it after locking (as `job_create` does) for the count to hold.
    """
    per_user = settings.JOB_LIMIT_ACTIVE_PER_USER
    per_project = settings.JOB_LIMIT_ACTIVE_PER_PROJECT
    active = Job.objects.filter(status__in=ACTIVE_STATUSES)
    if per_user:
        mine = active.filter(created_by=user).count()
        if mine >= per_user:
            raise JobLimitReached(
                f"You already have {_plural(mine, 'job')} queued or running (the limit is "
                f"{per_user} per person). Wait for one to finish or cancel one on the Jobs "
                "page, then try again."
            )
    if per_project:
        theirs = active.filter(project=project).count()
        if theirs >= per_project:
            raise JobLimitReached(
                f"This project already has {_plural(theirs, 'job')} queued or running (the "
                f"limit is {per_project} per project). Wait for one to finish or cancel one "
                "on the project's Jobs page, then try again."
            )


def job_create(*, project: Project, user: User, kind: JobKind, **fields: Any) -> Job:
    """Create a queued job, enqueue it after commit, and record it in the activity feed.

    Every job kind is created here, so the submission limits apply to all of them.
    Raises JobLimitReached (and creates nothing) when a limit is reached.
    """
    with transaction.atomic():
        # Lock order: user, then project. Serialises submissions that count the same jobs.
        list(User.objects.select_for_update().filter(id=user.id).values_list("id"))
        list(Project.objects.select_for_update().filter(id=project.id).values_list("id"))
        job_limits_check(project=project, user=user)
        job = Job.objects.create(
            project=project,
            kind=kind,
            queue=_queue_for(kind),
            message="Waiting for a worker",
            created_by=user,
            **fields,
        )
        activity_record(
            project=project,
            actor=user,
            verb=ActivityVerb.JOB_STARTED,
            description=f"started {job.get_kind_display()} job #{job.id}",
            job=job,
        )
        job_id = job.id
        transaction.on_commit(lambda: _enqueue(job_id))
    return job


def job_cancel(*, job: Job, actor: User | None = None) -> Job:
    now = timezone.now()
    updated = Job.objects.filter(id=job.id, status=JobStatus.QUEUED).update(
        status=JobStatus.CANCELLED,
        cancel_requested_at=now,
        finished_at=now,
        message="Cancelled before it started",
    )
    if not updated:
        updated = Job.objects.filter(
            id=job.id, status=JobStatus.RUNNING, cancel_requested_at__isnull=True
        ).update(cancel_requested_at=now, message="Cancelling…")
    if updated and actor is not None:
        activity_record(
            project=job.project_id,
            actor=actor,
            verb=ActivityVerb.JOB_CANCELLED,
            description=f"cancelled {job.get_kind_display()} job #{job.id}",
            job=job.id,
        )
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


def job_progress_message(*, job_id: int, message: str) -> None:
    """Say what a running job is doing now, leaving its measured counts alone."""
    Job.objects.filter(id=job_id, status=JobStatus.RUNNING).update(
        message=message[:300], heartbeat_at=timezone.now()
    )


def _record_finished(job: Job) -> None:
    by = f" by {job.created_by.username}" if job.created_by else ""
    activity_record(
        project=job.project_id,
        actor=None,
        verb=ActivityVerb.JOB_FINISHED,
        description=f"{job.get_kind_display()} job #{job.id}{by} {job.get_status_display().lower()}",
        job=job.id,
    )


def _finish(job_id: int, status: JobStatus, **fields: Any) -> bool:
    """Move an unfinished job to `status`; False when it had already finished."""
    now = timezone.now()
    with transaction.atomic():
        finished = (
            Job.objects.filter(id=job_id)
            .exclude(status__in=[JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED])
            .update(status=status, finished_at=now, heartbeat_at=now, **fields)
        )
        # Only the call that actually finished the job records it (a duplicate is a no-op).
        if finished:
            _record_finished(Job.objects.select_related("created_by").get(id=job_id))
    return bool(finished)


def job_succeed(*, job_id: int, result: dict[str, Any], message: str = "Done") -> bool:
    """Record success; False when the job had already finished (cancelled meanwhile).

    A stage's own bookkeeping on success lives with the stage (e.g. `trial_succeed`), which
    calls this inside its transaction.
    """
    return _finish(job_id, JobStatus.SUCCEEDED, result=result, message=message)


def job_fail(*, job_id: int, error: str, traceback: str = "") -> None:
    _finish(job_id, JobStatus.FAILED, error=error, traceback=traceback, message="Failed")


def job_mark_cancelled(*, job_id: int, result: dict[str, Any] | None = None) -> None:
    _finish(job_id, JobStatus.CANCELLED, result=result or {}, message="Cancelled")


def _enqueue_on_commit(job_id: int) -> None:
    transaction.on_commit(lambda: _enqueue(job_id))


# Kinds whose task resumes from its last checkpoint: a lost worker requeues them.
RESUMABLE_KINDS = (JobKind.FINETUNE, JobKind.ALIGN)


def job_reap_stale() -> int:
    """Handle running jobs whose worker stopped sending heartbeats. Returns how many.

    A resumable job (fine-tuning) with attempts left goes back to the queue and continues
    from its last checkpoint on the next worker; any other job, or one out of attempts,
    fails with a reason a person can act on.
    """
    now = timezone.now()
    stale = now - timedelta(seconds=settings.JOB_STALE_AFTER_S)
    lost = Job.objects.filter(status=JobStatus.RUNNING).filter(
        Q(heartbeat_at__lt=stale) | Q(heartbeat_at__isnull=True, started_at__lt=stale)
    )
    requeued: list[int] = []
    with transaction.atomic():
        lost_ids = list(lost.select_for_update().values_list("id", flat=True))
        retry = Job.objects.filter(
            id__in=lost_ids,
            status=JobStatus.RUNNING,
            kind__in=RESUMABLE_KINDS,
            attempt__lt=settings.JOB_MAX_ATTEMPTS,
            cancel_requested_at__isnull=True,
        )
        for job in retry:
            Job.objects.filter(id=job.id, status=JobStatus.RUNNING).update(
                status=JobStatus.QUEUED,
                heartbeat_at=None,
                worker="",
                message=(
                    f"The worker was lost at step {job.progress_done}; waiting for a worker "
                    f"to resume from the last checkpoint (attempt {job.attempt + 1} of "
                    f"{settings.JOB_MAX_ATTEMPTS})"
                ),
            )
            requeued.append(job.id)
            _enqueue_on_commit(job.id)
        failed_ids = [i for i in lost_ids if i not in requeued]
        count = Job.objects.filter(id__in=failed_ids, status=JobStatus.RUNNING).update(
            status=JobStatus.FAILED,
            finished_at=now,
            message="Failed",
            error=(
                f"The worker running this job stopped responding (no heartbeat for over "
                f"{settings.JOB_STALE_AFTER_S} s): it was probably stopped or ran out of "
                "memory. Start the job again."
            ),
        )
        for job in Job.objects.filter(id__in=failed_ids).select_related("created_by"):
            if job.kind in RESUMABLE_KINDS and job.attempt >= settings.JOB_MAX_ATTEMPTS:
                Job.objects.filter(id=job.id).update(
                    error=(
                        f"The worker was lost {job.attempt} times (no heartbeat for over "
                        f"{settings.JOB_STALE_AFTER_S} s each time), so the job stopped "
                        "retrying. The last checkpoint is kept; check the worker's memory "
                        "and logs, then start the job again."
                    )
                )
            _record_finished(job)
    if count or requeued:
        logger.warning(
            "Reaped %s job(s) with a stale heartbeat; requeued %s to resume", count, requeued
        )
    return count + len(requeued)
