"""Generate jobs end to end: the service enqueues on Redis, a real Celery worker runs the
tiny model against the PostgreSQL test database, and the Job row tells the story."""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User

from lifecycle_app.jobs.services import job_cancel
from lifecycle_app.models import CatalogModel, GenerationOutput, Job, JobStatus, Project
from lifecycle_app.stages.prompt.playground import job_create_generate
from tests.integration.conftest import WorkerProcess, wait_for_job
from workers.ml.params import MAX_NEW_TOKENS_LIMIT, GenerateParams

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PROMPT = "Summarize the dialogue between the customer and the agent in one sentence."


def _generate(
    project: Project, user: User, model: CatalogModel, *, max_new_tokens: int, **params: Any
) -> Job:
    return job_create_generate(
        project=project,
        user=user,
        base_model=model,
        params=GenerateParams(
            model_ref=model.slug, prompt=PROMPT, max_new_tokens=max_new_tokens, **params
        ),
    )


def _running_with_progress(job: Job) -> bool:
    return job.status == JobStatus.RUNNING and job.progress_done > 0


def test_a_generate_job_runs_to_success_with_measured_progress(
    live_worker: WorkerProcess, project: Project, owner: User, tiny_model: CatalogModel
) -> None:
    job = _generate(project, owner, tiny_model, max_new_tokens=24)

    job = wait_for_job(job.id)

    assert job.status == JobStatus.SUCCEEDED, job.error
    output = GenerationOutput.objects.get(job=job, index=0)
    assert output.text.strip()
    # The tiny model never emits an end token, so it always runs to the limit.
    assert output.output_tokens == 24
    assert output.finish_reason == "length"
    assert output.prompt_tokens > 0
    assert job.result["output_tokens"] == 24
    assert job.progress_done == job.progress_total == 24
    assert job.started_at is not None
    assert job.finished_at is not None
    assert job.heartbeat_at is not None
    assert job.created_at <= job.started_at <= job.finished_at
    assert job.heartbeat_at >= job.started_at
    assert job.worker == live_worker.hostname
    assert job.attempt == 1
    assert job.error == ""
    assert job.traceback == ""


def test_a_job_on_a_missing_local_model_fails_with_a_readable_error(
    live_worker: WorkerProcess, project: Project, owner: User
) -> None:
    location = "/nonexistent/lifecycle-models/not-here"
    missing_model = CatalogModel.objects.create(
        slug="missing-local", name="Missing local model", source="local", location=location
    )
    job = _generate(project, owner, missing_model, max_new_tokens=8)

    job = wait_for_job(job.id)

    assert job.status == JobStatus.FAILED
    assert location in job.error
    assert "Traceback" not in job.error
    assert 'File "' not in job.error
    # A user-facing error is expected, not a crash: no traceback is kept.
    assert job.traceback == ""
    assert job.finished_at is not None
    assert job.message == "Failed"


def test_cancel_stops_a_running_job_within_a_step(
    live_worker: WorkerProcess, project: Project, owner: User, tiny_model: CatalogModel
) -> None:
    job = _generate(project, owner, tiny_model, max_new_tokens=MAX_NEW_TOKENS_LIMIT)
    job = wait_for_job(job.id, _running_with_progress)

    job = job_cancel(job=job)
    assert job.cancel_requested_at is not None

    job = wait_for_job(job.id, timeout=15)
    assert job.status == JobStatus.CANCELLED
    output = GenerationOutput.objects.get(job=job, index=0)
    assert 0 < output.output_tokens < MAX_NEW_TOKENS_LIMIT
    assert output.finish_reason == "cancelled"
    assert job.result["finish_reason"] == "cancelled"
    assert job.result["output_tokens"] == output.output_tokens
    assert job.progress_done == output.output_tokens
    assert job.finished_at is not None
    assert job.cancel_requested_at is not None
    # The worker checks for cancellation after every token.
    assert job.finished_at - job.cancel_requested_at < timedelta(seconds=5)


def test_cancel_of_a_queued_job_is_immediate_and_the_worker_skips_it(
    live_worker: WorkerProcess, project: Project, owner: User, tiny_model: CatalogModel
) -> None:
    # Keep the only worker slot busy so the second job stays queued.
    blocker = _generate(project, owner, tiny_model, max_new_tokens=MAX_NEW_TOKENS_LIMIT)
    wait_for_job(blocker.id, _running_with_progress)
    queued = _generate(project, owner, tiny_model, max_new_tokens=8)
    assert Job.objects.get(id=queued.id).status == JobStatus.QUEUED

    queued = job_cancel(job=queued)

    assert queued.status == JobStatus.CANCELLED
    assert queued.finished_at is not None
    job_cancel(job=blocker)
    wait_for_job(blocker.id)
    # The worker receives the task after the blocker and must not run it.
    skipped = re.compile(rf"Job {queued.id} is not queued .*skipping")
    live_worker.wait_for_log(skipped)
    queued = Job.objects.get(id=queued.id)
    assert queued.status == JobStatus.CANCELLED
    assert queued.started_at is None
    assert queued.attempt == 0
    assert queued.worker == ""
    assert queued.message == "Cancelled before it started"


@pytest.fixture
def unreachable_broker(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Send tasks to a port nothing listens on; the rest of the app is untouched."""
    from workers.celery import app

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"redis://127.0.0.1:{port}/0"
    send_task = app.send_task

    def send_to_unreachable_broker(*args: Any, **kwargs: Any) -> Any:
        with app.connection_for_write(url) as connection:
            kwargs["connection"] = connection
            return send_task(*args, **kwargs)

    monkeypatch.setattr(app, "send_task", send_to_unreachable_broker)
    yield url


def test_a_job_whose_broker_cannot_be_reached_fails_loudly(
    unreachable_broker: str,
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="lifecycle_app.jobs.services"):
        job = _generate(project, owner, tiny_model, max_new_tokens=8)

    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.error.startswith("The job could not be queued")
    assert job.started_at is None
    assert job.finished_at is not None
    assert f"Could not enqueue job {job.id}" in caplog.text
