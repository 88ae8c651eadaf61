"""The reaper: fails or requeues jobs whose heartbeat stopped (on beat's schedule and when
a worker starts), and cleans up staged uploads and stale serving replies."""

from __future__ import annotations

import logging

from celery.signals import worker_ready

from lifecycle_app.datasets.services import staged_cleanup
from lifecycle_app.jobs import services as job_services
from workers.celery import app

logger = logging.getLogger(__name__)


@app.task(name="jobs.reap")
def reap_stale_jobs() -> int:
    from workers import serve_reply

    staged_cleanup()
    serve_reply.cleanup()
    return job_services.job_reap_stale()


@worker_ready.connect
def _reap_on_start(**kwargs: object) -> None:
    try:
        job_services.job_reap_stale()
    except Exception:
        logger.exception("Reaping stale jobs at start-up failed")
