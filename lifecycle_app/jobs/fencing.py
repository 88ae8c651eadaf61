"""Fencing and database retries for the writes a worker makes for its job.

Design note. A worker can stall without dying (VM pause, swap storm, partition): its job's
heartbeat goes stale, the reaper hands the job to another worker, and the stalled one may
wake up later and carry on. So every write a worker makes for a job runs inside
`job_guard(job_id, attempt)`: one transaction that first locks the Job row *and* checks
that the row is still running under this worker's attempt (the claim's token). The
reaper and the claim change `attempt`/`status` under the same row lock, so a write either
happens while the claim is current or not at all: a superseded worker gets `JobFenced`
and stops without writing (its files live in its own attempt folder; publishing an
artifact is a guarded row update).

Transient database errors (a restarted server, `pg_terminate_backend`, a dropped
connection) are retried with backoff for `JOB_DB_RETRY_S` seconds by
`with_db_retry`; after that `DatabaseUnavailable` tells the task to leave the job for
the reaper to requeue (resumable kinds resume from their checkpoint). Both exceptions are
`workers.ml.errors.JobInterrupted`, which the ML core never mistakes for bad input.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction

from lifecycle_app.jobs.models import Job, JobStatus
from workers.ml.errors import JobInterrupted

logger = logging.getLogger(__name__)

T = TypeVar("T")

TRANSIENT_DB_ERRORS = (OperationalError, InterfaceError)


class JobFenced(JobInterrupted):
    """This worker's claim on the job was superseded (reaped, requeued, taken over,
    finished or cancelled by someone else): stop without writing."""


class DatabaseUnavailable(JobInterrupted):
    """The database stayed unreachable for longer than the retry budget."""


def is_transient_db_error(exc: BaseException) -> bool:
    return isinstance(exc, TRANSIENT_DB_ERRORS)


@contextlib.contextmanager
def job_guard(job_id: int, attempt: int) -> Iterator[None]:
    """A transaction in which the job is still running under `attempt` (row locked)."""
    with transaction.atomic():
        held = list(
            Job.objects.select_for_update()
            .filter(id=job_id, attempt=attempt, status=JobStatus.RUNNING)
            .values_list("id", flat=True)
        )
        if not held:
            raise JobFenced(f"job {job_id}: attempt {attempt} no longer holds the job")
        yield


def with_db_retry(fn: Callable[[], T], *, what: str = "a job write") -> T:
    """Run `fn`, retrying transient database errors with backoff for JOB_DB_RETRY_S.

    Must be called outside any transaction (a broken transaction cannot be retried).
    Raises DatabaseUnavailable when the budget is spent.
    """
    budget = settings.JOB_DB_RETRY_S
    started = time.monotonic()
    delay = 0.1
    failures = 0
    while True:
        try:
            return fn()
        except TRANSIENT_DB_ERRORS as exc:
            if connection.in_atomic_block:
                raise
            failures += 1
            # The connection is probably dead: drop it so the next try reconnects.
            with contextlib.suppress(Exception):
                connection.close()
            if time.monotonic() - started >= budget:
                raise DatabaseUnavailable(
                    f"The database could not be reached for {budget:.0f} s "
                    f"({type(exc).__name__}: {exc})"
                ) from exc
            logger.warning(
                "Database error during %s (try %s): %s: %s; retrying in %.1f s",
                what,
                failures,
                type(exc).__name__,
                str(exc).strip()[:200],
                delay,
            )
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def guarded_write(job_id: int, attempt: int, fn: Callable[[], T], *, what: str = "") -> T:
    """`fn` inside `job_guard`, retried on transient database errors."""

    def once() -> T:
        with job_guard(job_id, attempt):
            return fn()

    return with_db_retry(once, what=what or f"a write for job {job_id}")
