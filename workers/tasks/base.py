"""Thin tasks: claim the Job row, call the ML core, write progress and results back.

Tasks take only a job id. Every exception is logged with its traceback and recorded on
the job; nothing is swallowed.

The shared part of every job kind: the claim (`JobRun`: the attempt token every write
carries, see lifecycle_app/jobs/fencing.py), the heartbeat, the claim/run wrapper and
`job_task`, which makes the Celery task of one kind (each with its own time limits).

- Every write for the job goes through `run.write(fn, **kwargs)`: fenced by the attempt
  and retried on transient database errors. A superseded worker stops at its next write,
  cancel check or heartbeat (`JobFenced`) without writing anything.
- Each attempt has its own folder (`run.folder`, var/jobs/<id>/attempt-<n>/): a late
  writer can only touch its own files; results are published by a fenced row update.
- A database that stays away past the retry budget, or a database error anywhere in the
  task, puts the job back in the queue (resumable kinds continue from their checkpoint)
  instead of failing it for good; disk-full and permission errors get messages a person
  can act on (failures.py), with the detail for the operator in the log.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import close_old_connections, connection

from lifecycle_app.jobs import services as job_services
from lifecycle_app.jobs.fencing import (
    DatabaseUnavailable,
    JobFenced,
    guarded_write,
    is_transient_db_error,
    with_db_retry,
)
from lifecycle_app.jobs.models import Job
from lifecycle_app.storage.models import loadable_spec
from workers.celery import app
from workers.ml.errors import UserFacingError
from workers.ml.loading import ModelSpec
from workers.tasks.failures import describe_failure

logger = logging.getLogger(__name__)

T = TypeVar("T")


def attempt_folder(job_id: int, attempt: int) -> Path:
    return Path(settings.JOBS_DIR) / str(job_id) / f"attempt-{attempt}"


@dataclass
class JobRun:
    """This worker's claim on a job: its id and attempt token."""

    job_id: int
    attempt: int
    fenced: threading.Event = field(default_factory=threading.Event)

    @property
    def folder(self) -> Path:
        """This attempt's own folder (created on first use)."""
        path = attempt_folder(self.job_id, self.attempt)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def write(self, fn: Callable[..., T], /, **kwargs: Any) -> T:
        """`fn(**kwargs)` as a fenced write, retried on transient database errors."""
        if self.fenced.is_set():
            raise JobFenced(f"job {self.job_id}: attempt {self.attempt} was superseded")
        try:
            return guarded_write(
                self.job_id,
                self.attempt,
                lambda: fn(**kwargs),
                what=f"{getattr(fn, '__name__', 'a write')} for job {self.job_id}",
            )
        except JobFenced:
            self.fenced.set()
            raise

    def read(self, fn: Callable[[], T]) -> T:
        """A read during the run, retried on transient database errors."""
        return with_db_retry(fn, what=f"a read for job {self.job_id}")

    def should_cancel(self) -> bool:
        """The ML core's cancel check: True when cancel was requested; raises JobFenced
        when this worker no longer holds the job (so it stops at once, writing nothing)."""
        if self.fenced.is_set():
            raise JobFenced(f"job {self.job_id}: attempt {self.attempt} was superseded")
        return self.read(lambda: job_services.job_cancel_requested(job_id=self.job_id))

    def fresh(self) -> Job:
        return self.read(lambda: Job.objects.get(id=self.job_id))


@contextlib.contextmanager
def heartbeat(run: JobRun, interval: float | None = None) -> Iterator[None]:
    """Beat every `interval` seconds (settings.JOB_HEARTBEAT_S) from a thread, also while
    a model loads. A fenced beat marks the run fenced: the task stops at its next check."""
    interval = interval or settings.JOB_HEARTBEAT_S
    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(interval):
                try:
                    run.write(job_services.job_heartbeat, job_id=run.job_id)
                except JobFenced:
                    logger.warning(
                        "Job %s: attempt %s was superseded (its heartbeat was refused); "
                        "stopping without writing",
                        run.job_id,
                        run.attempt,
                    )
                    return
                except DatabaseUnavailable as exc:
                    logger.error("Job %s: heartbeat failed: %s", run.job_id, exc)
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=beat, name=f"heartbeat-{run.job_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def _write_params(job: Job, run: JobRun) -> None:
    (run.folder / "params.json").write_text(json.dumps(job.params, indent=2, sort_keys=True))


def _fail(run: JobRun, error: str, tb: str = "") -> None:
    try:
        run.write(job_services.job_fail, job_id=run.job_id, error=error, traceback=tb)
    except JobFenced:
        logger.warning("Job %s: not recording the failure of a superseded attempt", run.job_id)
    except DatabaseUnavailable:
        logger.error("Job %s: could not record its failure; the reaper will", run.job_id)


def _retry_later(run: JobRun, reason: str) -> None:
    try:
        run.write(
            job_services.job_retry_later, job_id=run.job_id, attempt=run.attempt, reason=reason
        )
    except JobFenced:
        logger.warning("Job %s: superseded while being requeued", run.job_id)
    except DatabaseUnavailable:
        logger.error(
            "Job %s: the database is still unreachable; leaving the job for the reaper",
            run.job_id,
        )


DB_LOST = "The connection to the database was lost while the job ran."


def _run(task: Task, job_id: int, body: Callable[[Job, JobRun], None]) -> None:
    close_old_connections()
    worker = task.request.hostname or "worker"
    try:
        job = with_db_retry(
            lambda: job_services.job_claim(job_id=job_id, worker=worker), what="the claim"
        )
    except DatabaseUnavailable:
        # Still queued: the reaper sends it again once the database is back.
        logger.error("Job %s: the database is unreachable; not claimed", job_id)
        return
    if job is None:
        logger.info("Job %s is not queued (taken, cancelled or finished); skipping", job_id)
        return
    run = JobRun(job_id=job.id, attempt=job.attempt)
    try:
        _write_params(job, run)
        with heartbeat(run):
            body(job, run)
    except JobFenced as exc:
        logger.warning("Job %s stopped without writing: %s", job_id, exc)
    except DatabaseUnavailable as exc:
        logger.error("Job %s: %s", job_id, exc)
        _retry_later(run, DB_LOST)
    except UserFacingError as exc:
        logger.warning("Job %s failed: %s", job_id, exc)
        _fail(run, str(exc))
    except SoftTimeLimitExceeded:
        logger.error("Job %s hit its time limit", job_id)
        _fail(
            run,
            "The job ran past its time limit and was stopped. "
            "Ask for fewer tokens or a smaller model.",
        )
    except Exception as exc:
        if is_transient_db_error(exc):
            logger.exception("Job %s: database error", job_id)
            with contextlib.suppress(Exception):
                connection.close()
            _retry_later(run, DB_LOST)
            return
        message, detail = describe_failure(exc, storage=Path(settings.VAR_DIR))
        logger.exception("Job %s crashed: %s", job_id, detail)
        _fail(run, message, traceback.format_exc())


def job_task(
    body: Callable[[Job, JobRun], None], *, name: str, soft_time_limit: int, time_limit: int
) -> Task[[int], None]:
    """The Celery task `name`: takes a job id, claims the job and runs `body` on it
    (`_run`). `time_limit` (hard) is above `soft_time_limit`, so `_run` can record the
    soft limit on the job before the worker kills the task."""

    def run(self: Task, job_id: int) -> None:
        _run(self, job_id, body)

    run.__name__ = run.__qualname__ = name.rpartition(".")[2] + "_job"
    run.__module__ = body.__module__
    return app.task(name=name, bind=True, soft_time_limit=soft_time_limit, time_limit=time_limit)(
        run
    )


def model_spec_for(job: Job) -> ModelSpec:
    base = job.base_model
    if base is None:
        raise UserFacingError("This job has no model.")
    # A store key is fetched through this host's cache (lifecycle_app/storage/models.py).
    return loadable_spec(base, Path(settings.MODELS_DIR), Path(settings.CACHE_DIR) / "views")


def model_folder(ref: str) -> str:
    """The folder this host loads for a model reference from the web: "catalog:<id>" (a
    catalog model or project candidate: built or prepared here, fetched from the store,
    an adapter pointed at this host's base model) or a variant's folder row value (an
    absolute path as it is, a store key fetched through this host's cache)."""
    from lifecycle_app.catalog.selectors import CATALOG_REF, model_for_ref
    from lifecycle_app.storage import local_dir
    from workers.ml.loading import resolve

    if ref.startswith(CATALOG_REF):
        model = model_for_ref(ref)
        if model is None:
            raise UserFacingError("The model this was set up with was deleted.")
        spec = loadable_spec(model, Path(settings.MODELS_DIR), Path(settings.CACHE_DIR) / "views")
        return resolve(spec, Path(settings.MODELS_DIR))
    return str(local_dir(ref))


class JobCancelled(Exception):
    pass
