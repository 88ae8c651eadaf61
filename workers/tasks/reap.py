"""The reaper: fails or requeues jobs whose heartbeat stopped, sends again jobs whose
broker message was lost, and cleans up staged uploads and stale serving replies.

Design note. The reaper runs in a thread of every worker's main process (started when the
worker is ready), not as a task: a task would wait in the queue behind the very jobs it
watches (with concurrency 1, behind a three-hour fine-tune). The main process keeps
running while its pool child trains, so a dead job elsewhere is found within
`JOB_REAP_EVERY_S` (half the stale limit) after its heartbeat goes stale. Several workers
reaping at once is safe: every change is a guarded update under a row lock. No beat
process is needed; the `jobs.reap` task stays for operators who want to trigger a pass.
"""

from __future__ import annotations

import logging
import threading

from celery.signals import worker_ready, worker_shutdown
from django.conf import settings
from django.db import connection

from lifecycle_app.datasets.services import staged_cleanup
from lifecycle_app.jobs import services as job_services
from workers.celery import app

logger = logging.getLogger(__name__)


def reap_once() -> int:
    """One pass: stale running jobs, lost queued messages, leftovers. Returns how many jobs
    were reaped or re-sent."""
    from workers import serve_reply

    staged_cleanup()
    serve_reply.cleanup()
    return job_services.job_reap_stale() + len(job_services.job_resend_lost())


@app.task(name="jobs.reap")
def reap_stale_jobs() -> int:
    return reap_once()


_stop = threading.Event()


def _reaper_loop(interval: float) -> None:
    while True:
        try:
            reap_once()
        except Exception:  # the database or broker is away: try again next time
            logger.exception("Reaping stale jobs failed")
            try:
                connection.close()
            except Exception:
                logger.debug("closing the reaper's connection failed", exc_info=True)
        if _stop.wait(interval):
            break
    connection.close()


@worker_ready.connect
def _start_reaper(**kwargs: object) -> None:
    interval = settings.JOB_REAP_EVERY_S
    thread = threading.Thread(target=_reaper_loop, args=(interval,), name="reaper", daemon=True)
    thread.start()
    logger.info("Reaper thread started (every %.0f s)", interval)


@worker_shutdown.connect
def _stop_reaper(**kwargs: object) -> None:
    _stop.set()
