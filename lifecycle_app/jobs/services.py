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
- The reaper fails running jobs whose heartbeat stopped, with a reason a person can act on,
  or requeues them to resume; it also sends again a job whose broker message was lost
  (queued too long with no claim). It runs in a thread of every worker (workers/tasks/reap.py),
  so it never waits behind the jobs it watches.
- A worker's writes are fenced by the claim's attempt (jobs/fencing.py).
- Bookkeeping across attempts: the first start is kept, each attempt is logged in
  `attempts`, progress never goes back while its total is unchanged, and a succeeded job
  shows its whole total done.
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
from django.db.models import Case, F, Q, When
from django.db.models.functions import Coalesce, Greatest
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
    JobKind.INDEX: "jobs.index",
    JobKind.APP_EVALUATE: "jobs.app_evaluate",
}


def _queue_for(kind: str) -> str:
    return "gpu" if settings.GPU_QUEUE else "cpu"


QUEUE_DOWN_MESSAGE = (
    "The job could not be queued: the job service is not reachable right now. Nothing was "
    "lost; try again in a minute. If it keeps happening, tell whoever runs this "
    "installation (the message broker is down or not answering)."
)


def _send(job: Job) -> None:
    """Hand the job's id to the broker (bounded by the broker timeouts in celery.py)."""
    from workers.celery import app

    app.send_task(TASK_FOR_KIND[JobKind(job.kind)], args=[job.id], queue=job.queue)


def _enqueue(job_id: int) -> None:
    job = Job.objects.get(id=job_id)
    try:
        _send(job)
    except Exception as exc:  # the broker is down or hung: fail loudly, never run inline
        logger.exception("Could not enqueue job %s (%s: %s)", job.id, type(exc).__name__, exc)
        job_fail(job_id=job.id, error=QUEUE_DOWN_MESSAGE)
        return
    Job.objects.filter(id=job_id, status=JobStatus.QUEUED).update(
        enqueued_at=timezone.now(), sends=F("sends") + 1
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


def _attempt_log(job_id: int, attempt: int, **fields: Any) -> None:
    """Add or update this attempt's entry in the job's attempt log (inside the caller's
    transaction when there is one)."""
    with transaction.atomic():
        row = Job.objects.select_for_update().filter(id=job_id).values("attempts").first()
        if row is None:
            return
        log = [dict(e) for e in row["attempts"] or []]
        entry = next((e for e in log if e.get("attempt") == attempt), None)
        if entry is None:
            entry = {"attempt": attempt}
            log.append(entry)
        entry.update(fields)
        Job.objects.filter(id=job_id).update(attempts=log)


def _end_attempt(job_id: int, outcome: str) -> None:
    current = Job.objects.filter(id=job_id).values_list("attempt", flat=True).first()
    if current:
        _attempt_log(job_id, current, ended_at=timezone.now().isoformat(), outcome=outcome)


def job_claim(*, job_id: int, worker: str) -> Job | None:
    """Take a job for this worker, or return None if it is not ours to run.

    The claim increments `attempt`: the token every later write of this worker carries.
    The first start is kept across attempts (`started_at`); each attempt is logged.
    """
    now = timezone.now()
    fields: dict[str, Any] = {
        "status": JobStatus.RUNNING,
        "started_at": Coalesce(F("started_at"), now),
        "heartbeat_at": now,
        "worker": worker[:200],
        "attempt": F("attempt") + 1,
        "message": "Starting",
    }
    with transaction.atomic():
        claimed = Job.objects.filter(id=job_id, status=JobStatus.QUEUED).update(**fields)
        if not claimed:
            stale = now - timedelta(seconds=settings.JOB_STALE_AFTER_S)
            taken = Job.objects.filter(id=job_id, status=JobStatus.RUNNING, heartbeat_at__lt=stale)
            previous = taken.values_list("attempt", flat=True).first()
            claimed = taken.update(**{**fields, "message": "Resuming after a lost worker"})
            if claimed and previous:
                _attempt_log(job_id, previous, ended_at=now.isoformat(), outcome="lost")
        if not claimed:
            return None
        attempt = Job.objects.filter(id=job_id).values_list("attempt", flat=True).get()
        _attempt_log(job_id, attempt, worker=worker[:200], started_at=now.isoformat())
        return Job.objects.select_related("base_model", "dataset").get(id=job_id)


def job_heartbeat(*, job_id: int) -> None:
    Job.objects.filter(id=job_id, status=JobStatus.RUNNING).update(heartbeat_at=timezone.now())


def job_cancel_requested(*, job_id: int) -> bool:
    return Job.objects.filter(id=job_id, cancel_requested_at__isnull=False).exists()


def progress_done_expression(*, done: int, total: int) -> Case:
    """The value `progress_done` takes in an update: it never goes back while the total
    stays the same (a resumed run repeats the steps after its checkpoint, and the stalled
    attempt it replaced may have got further); a new total (a new phase) starts over."""
    return Case(When(progress_total=total, then=Greatest(F("progress_done"), done)), default=done)


def job_progress(*, job_id: int, done: int, total: int, message: str = "") -> None:
    """Measured progress, never going back while its total is unchanged."""
    Job.objects.filter(id=job_id, status=JobStatus.RUNNING).update(
        progress_done=progress_done_expression(done=done, total=total),
        progress_total=total,
        message=message[:300],
        heartbeat_at=timezone.now(),
    )


def job_progress_add(*, job_id: int, done: int) -> None:
    """Count `done` more units of a running job (work that several loops share)."""
    Job.objects.filter(id=job_id, status=JobStatus.RUNNING).update(
        progress_done=F("progress_done") + done, heartbeat_at=timezone.now()
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
    if status == JobStatus.SUCCEEDED:  # the whole total is done, whatever the last report
        fields["progress_done"] = Case(
            When(progress_total__gt=0, then=F("progress_total")), default=F("progress_done")
        )
    with transaction.atomic():
        finished = (
            Job.objects.filter(id=job_id)
            .exclude(status__in=[JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED])
            .update(status=status, finished_at=now, heartbeat_at=now, **fields)
        )
        # Only the call that actually finished the job records it (a duplicate is a no-op).
        if finished:
            _end_attempt(job_id, str(status))
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


def job_retry_later(*, job_id: int, attempt: int, reason: str) -> bool:
    """Put a running job back in the queue after an infrastructure fault (the database went
    away mid-run). Resumable kinds continue from their checkpoint, others start over.
    Returns False (and fails the job) when it is out of attempts. Call it fenced."""
    job = Job.objects.get(id=job_id)
    if job.attempt >= settings.JOB_MAX_ATTEMPTS:
        job_fail(
            job_id=job_id,
            error=(
                f"{reason} This happened on each of {job.attempt} attempts, so the job "
                "stopped retrying. Start it again once the service is back."
            ),
        )
        return False
    how = "resume from the last checkpoint" if job.kind in RESUMABLE_KINDS else "start again"
    _end_attempt(job_id, "retried")
    Job.objects.filter(id=job_id, attempt=attempt, status=JobStatus.RUNNING).update(
        status=JobStatus.QUEUED,
        heartbeat_at=None,
        worker="",
        message=f"{reason} Waiting for a worker to {how} (attempt {attempt + 1} of "
        f"{settings.JOB_MAX_ATTEMPTS})",
    )
    _enqueue_on_commit(job_id)
    return True


def job_resume(*, job: Job, actor: User) -> Job:
    """Queue a failed resumable run again; it continues from its last checkpoint.

    The caller checks that a checkpoint exists. Submission limits apply as for a new job.
    """
    with transaction.atomic():
        list(User.objects.select_for_update().filter(id=actor.id).values_list("id"))
        list(Project.objects.select_for_update().filter(id=job.project_id).values_list("id"))
        job_limits_check(project=job.project, user=actor)
        updated = Job.objects.filter(
            id=job.id, status=JobStatus.FAILED, kind__in=RESUMABLE_KINDS
        ).update(
            status=JobStatus.QUEUED,
            finished_at=None,
            heartbeat_at=None,
            cancel_requested_at=None,
            worker="",
            error="",
            traceback="",
            message="Waiting for a worker to resume from the last checkpoint",
        )
        if updated:
            activity_record(
                project=job.project,
                actor=actor,
                verb=ActivityVerb.JOB_STARTED,
                description=f"resumed {job.get_kind_display()} job #{job.id}",
                job=job,
            )
            _enqueue_on_commit(job.id)
    job.refresh_from_db()
    return job


def job_resend_lost() -> list[int]:
    """Send again the jobs whose broker message was lost. Returns their ids.

    A job counts as lost when it is still queued `JOB_RESEND_AFTER_S` after its last send
    (doubling after each re-send, at most an hour), or was never sent at all. A duplicate
    message is harmless: the guarded claim lets only one delivery run the job. The
    compare-and-set on `enqueued_at` keeps two reapers from sending the same job twice.
    """
    now = timezone.now()
    base = settings.JOB_RESEND_AFTER_S
    sent: list[int] = []
    queued = Job.objects.filter(status=JobStatus.QUEUED).values_list(
        "id", "enqueued_at", "sends", "created_at"
    )
    for job_id, enqueued_at, sends, created_at in queued:
        wait = min(base * 2 ** max(sends - 1, 0), 3600)
        last = enqueued_at or created_at
        if (now - last).total_seconds() < wait:
            continue
        claimed = Job.objects.filter(
            id=job_id, status=JobStatus.QUEUED, enqueued_at=enqueued_at
        ).update(enqueued_at=now, sends=F("sends") + 1)
        if not claimed:
            continue
        try:
            _send(Job.objects.get(id=job_id))
        except Exception as exc:
            logger.warning(
                "Could not re-send queued job %s: %s: %s", job_id, type(exc).__name__, exc
            )
            continue
        sent.append(job_id)
    if sent:
        logger.warning("Re-sent %s queued job(s) whose message was lost: %s", len(sent), sent)
    return sent


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
            _attempt_log(job.id, job.attempt, ended_at=now.isoformat(), outcome="lost")
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
            _attempt_log(job.id, job.attempt, ended_at=now.isoformat(), outcome="lost")
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
