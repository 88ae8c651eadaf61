"""Thin tasks: claim the Job row, call the ML core, write progress and results back.

Tasks take only a job id. Every exception is logged with its traceback and recorded on
the job; nothing is swallowed.

The shared part of every job kind: the heartbeat, the claim/run wrapper and `job_task`,
which makes the Celery task of one kind (each with its own time limits).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import close_old_connections, connection

from lifecycle_app.jobs import services as job_services
from lifecycle_app.jobs.models import Job
from workers.celery import app
from workers.ml.errors import UserFacingError
from workers.ml.loading import ModelSpec

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def heartbeat(job_id: int, interval: float | None = None) -> Iterator[None]:
    """Beat every `interval` seconds (settings.JOB_HEARTBEAT_S) from a thread, also while
    a model loads."""
    interval = interval or settings.JOB_HEARTBEAT_S
    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(interval):
                job_services.job_heartbeat(job_id=job_id)
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=beat, name=f"heartbeat-{job_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def _write_params(job: Job) -> None:
    folder = Path(settings.JOBS_DIR) / str(job.id)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "params.json").write_text(json.dumps(job.params, indent=2, sort_keys=True))


def _run(task: Task, job_id: int, body: object) -> None:
    close_old_connections()
    job = job_services.job_claim(job_id=job_id, worker=task.request.hostname or "worker")
    if job is None:
        logger.info("Job %s is not queued (taken, cancelled or finished); skipping", job_id)
        return
    try:
        _write_params(job)
        with heartbeat(job.id):
            body(job)  # type: ignore[operator]
    except UserFacingError as exc:
        logger.warning("Job %s failed: %s", job_id, exc)
        job_services.job_fail(job_id=job_id, error=str(exc))
    except SoftTimeLimitExceeded:
        logger.error("Job %s hit its time limit", job_id)
        job_services.job_fail(
            job_id=job_id,
            error="The job ran past its time limit and was stopped. "
            "Ask for fewer tokens or a smaller model.",
        )
    except Exception as exc:
        logger.exception("Job %s crashed", job_id)
        job_services.job_fail(
            job_id=job_id,
            error=f"Unexpected error: {type(exc).__name__}: {exc}",
            traceback=traceback.format_exc(),
        )


def job_task(
    body: Callable[[Job], None], *, name: str, soft_time_limit: int, time_limit: int
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
    return ModelSpec(source=base.source, location=base.location)  # type: ignore[arg-type]


class JobCancelled(Exception):
    pass
