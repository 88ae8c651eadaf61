"""The job lifecycle services: create and enqueue, claim, finish, cancel, reap."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.utils import timezone

from lifecycle_app.jobs import services as jobs_services
from lifecycle_app.models import (
    CatalogModel,
    GenerationOutput,
    Job,
    JobKind,
    JobStatus,
    Project,
    Stage,
    StageKey,
    StepStatus,
)
from lifecycle_app.stages.prompt import playground as prompt_playground
from lifecycle_app.stages.prompt.services import trial_succeed
from tests.factories import JobFactory
from workers.ml.params import GenerateParams

STALE = timedelta(seconds=django_settings.JOB_STALE_AFTER_S + 5)


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What would have gone to the broker: the real `_enqueue` runs, `send_task` records."""
    from workers.celery import app

    calls: list[dict[str, Any]] = []

    def send_task(name: str, args: list[Any], queue: str) -> None:
        calls.append({"name": name, "args": args, "queue": queue})

    monkeypatch.setattr(app, "send_task", send_task)
    return calls


def running_job(project: Project, *, heartbeat_age: timedelta, **fields: Any) -> Job:
    now = timezone.now()
    return JobFactory.create(
        project=project,
        status=JobStatus.RUNNING,
        started_at=now - heartbeat_age - timedelta(seconds=1),
        heartbeat_at=now - heartbeat_age,
        attempt=1,
        worker="old-worker",
        **fields,
    )


def prompt_step(project: Project) -> dict[str, Any]:
    return Stage.objects.get(project=project, key=StageKey.ADAPT).step("prompt")


def create_generate(project: Project, user: User, model: CatalogModel) -> Job:
    params = GenerateParams(model_ref=model.slug, prompt="Say hi", max_new_tokens=12)
    return prompt_playground.job_create_generate(
        project=project, user=user, base_model=model, params=params
    )


# --- Create and enqueue -----------------------------------------------------------------


def test_it_enqueues_a_new_job_only_after_the_transaction_commits(
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    sent: list[dict[str, Any]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        job = create_generate(project, owner, tiny_model)
    assert sent == []

    for callback in callbacks:
        callback()

    assert sent == [{"name": "jobs.generate", "args": [job.id], "queue": "cpu"}]
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    assert job.message == "Waiting for a worker"


def test_it_records_the_prompt_and_the_settings_on_the_prompt_step(
    project: Project, owner: User, tiny_model: CatalogModel, sent: list[dict[str, Any]]
) -> None:
    job = create_generate(project, owner, tiny_model)

    assert GenerationOutput.objects.get(job=job).prompt == "Say hi"
    step = prompt_step(project)
    assert step["status"] == StepStatus.IN_PROGRESS
    assert step["answers"]["last_job"] == job.id
    assert step["answers"]["last_params"]["max_new_tokens"] == 12


def test_it_sends_jobs_to_the_gpu_queue_when_configured(
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    sent: list[dict[str, Any]],
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.GPU_QUEUE = True

    with django_capture_on_commit_callbacks(execute=True):
        job = create_generate(project, owner, tiny_model)

    assert job.queue == "gpu"
    assert sent[0]["queue"] == "gpu"


def test_it_fails_the_job_loudly_when_the_broker_cannot_be_reached(
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    django_capture_on_commit_callbacks: Any,
) -> None:
    from workers.celery import app

    def send_task(*args: Any, **kwargs: Any) -> None:
        raise ConnectionRefusedError("[Errno 111] Connection refused")

    monkeypatch.setattr(app, "send_task", send_task)

    with django_capture_on_commit_callbacks(execute=True):
        job = create_generate(project, owner, tiny_model)

    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    # The person reads what to do; the operator's detail is in the log, not on the page.
    assert job.error.startswith("The job could not be queued")
    assert "try again in a minute" in job.error
    assert "ConnectionRefusedError" not in job.error and "broker is running" not in job.error
    assert job.finished_at is not None
    assert f"Could not enqueue job {job.id} (ConnectionRefusedError" in caplog.text


# --- Claim ------------------------------------------------------------------------------


def test_it_claims_a_queued_job_once(project: Project) -> None:
    job = JobFactory.create(project=project)

    claimed = jobs_services.job_claim(job_id=job.id, worker="worker-a")
    again = jobs_services.job_claim(job_id=job.id, worker="worker-b")

    assert claimed is not None
    assert claimed.status == JobStatus.RUNNING
    assert claimed.worker == "worker-a"
    assert claimed.attempt == 1
    assert claimed.started_at is not None
    assert claimed.heartbeat_at is not None
    assert again is None
    job.refresh_from_db()
    assert job.worker == "worker-a"


def test_it_takes_over_a_running_job_whose_heartbeat_is_stale(project: Project) -> None:
    job = running_job(project, heartbeat_age=STALE)

    claimed = jobs_services.job_claim(job_id=job.id, worker="worker-b")

    assert claimed is not None
    assert claimed.status == JobStatus.RUNNING
    assert claimed.attempt == 2
    assert claimed.worker == "worker-b"
    assert claimed.message == "Resuming after a lost worker"
    assert claimed.heartbeat_at is not None
    assert timezone.now() - claimed.heartbeat_at < timedelta(seconds=5)


def test_it_does_not_take_over_a_running_job_with_a_fresh_heartbeat(project: Project) -> None:
    job = running_job(project, heartbeat_age=timedelta(seconds=2))

    assert jobs_services.job_claim(job_id=job.id, worker="worker-b") is None
    job.refresh_from_db()
    assert (job.worker, job.attempt) == ("old-worker", 1)


@pytest.mark.parametrize("status", [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED])
def test_it_does_not_claim_a_finished_job(status: str, project: Project) -> None:
    job = JobFactory.create(project=project, status=status)

    assert jobs_services.job_claim(job_id=job.id, worker="worker-a") is None
    job.refresh_from_db()
    assert job.status == status


def test_it_does_not_claim_a_job_that_does_not_exist(db: None) -> None:
    assert jobs_services.job_claim(job_id=987654, worker="worker-a") is None


def test_it_truncates_a_long_worker_name(project: Project) -> None:
    job = JobFactory.create(project=project)

    claimed = jobs_services.job_claim(job_id=job.id, worker="w" * 500)

    assert claimed is not None
    assert len(claimed.worker) == 200


# --- Progress and heartbeat -------------------------------------------------------------


def test_it_records_progress_only_for_a_running_job(project: Project) -> None:
    running = running_job(project, heartbeat_age=timedelta(seconds=30))
    queued = JobFactory.create(project=project)

    jobs_services.job_progress(job_id=running.id, done=3, total=8, message="Generating")
    jobs_services.job_progress(job_id=queued.id, done=3, total=8, message="Generating")

    running.refresh_from_db()
    queued.refresh_from_db()
    assert running.progress_done == 3
    assert running.progress_total == 8
    assert running.message == "Generating"
    assert running.heartbeat_at is not None
    assert timezone.now() - running.heartbeat_at < timedelta(seconds=5)
    assert queued.progress_done == 0


# --- Finish -----------------------------------------------------------------------------


def test_the_job_engine_saves_no_step_when_a_trial_succeeds(project: Project) -> None:
    """The engine knows no stage: the prompt stage's own trial_succeed marks its step."""
    job = running_job(project, heartbeat_age=timedelta(seconds=1), kind=JobKind.TRIAL)

    assert jobs_services.job_succeed(job_id=job.id, result={"rows_done": 5}) is True

    assert prompt_step(project).get("status") != StepStatus.COMPLETE
    assert jobs_services.job_succeed(job_id=job.id, result={}) is False  # already finished


def test_it_marks_the_prompt_step_complete_when_a_trial_succeeds(project: Project) -> None:
    job = running_job(project, heartbeat_age=timedelta(seconds=1), kind=JobKind.TRIAL)

    trial_succeed(job_id=job.id, result={"rows_done": 5}, message="5 rows")

    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    assert job.result == {"rows_done": 5}
    assert job.finished_at is not None
    step = prompt_step(project)
    assert step["status"] == StepStatus.COMPLETE
    assert step["answers"]["succeeded_trial"] == job.id


def test_a_playground_generation_does_not_complete_the_prompt_step(project: Project) -> None:
    job = running_job(project, heartbeat_age=timedelta(seconds=1))

    jobs_services.job_succeed(job_id=job.id, result={"tokens": 5})

    assert prompt_step(project).get("status") != StepStatus.COMPLETE


def test_it_keeps_a_cancelled_job_cancelled_when_it_later_succeeds(project: Project) -> None:
    job = running_job(project, heartbeat_age=timedelta(seconds=1))
    jobs_services.job_mark_cancelled(job_id=job.id, result={"partial": True})

    jobs_services.job_succeed(job_id=job.id, result={"tokens": 5})

    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert job.result == {"partial": True}
    assert job.message == "Cancelled"
    assert prompt_step(project) == {}


def test_it_keeps_a_failed_job_failed(project: Project) -> None:
    job = running_job(project, heartbeat_age=timedelta(seconds=1))
    jobs_services.job_fail(job_id=job.id, error="Out of memory", traceback="Traceback …")

    jobs_services.job_mark_cancelled(job_id=job.id)
    jobs_services.job_fail(job_id=job.id, error="Something else")

    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.error == "Out of memory"
    assert job.traceback == "Traceback …"


def test_it_keeps_a_succeeded_job_succeeded(project: Project) -> None:
    job = running_job(project, heartbeat_age=timedelta(seconds=1))
    jobs_services.job_succeed(job_id=job.id, result={"tokens": 5})

    jobs_services.job_fail(job_id=job.id, error="late failure")

    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    assert job.error == ""


# --- Cancel -----------------------------------------------------------------------------


def test_it_cancels_a_queued_job_so_no_worker_claims_it(project: Project) -> None:
    job = JobFactory.create(project=project)

    jobs_services.job_cancel(job=job)

    assert job.status == JobStatus.CANCELLED
    assert jobs_services.job_claim(job_id=job.id, worker="worker-a") is None


def test_it_asks_a_running_job_to_stop_once(project: Project) -> None:
    job = running_job(project, heartbeat_age=timedelta(seconds=1))

    jobs_services.job_cancel(job=job)
    first_request = job.cancel_requested_at
    jobs_services.job_cancel(job=job)

    assert job.status == JobStatus.RUNNING
    assert first_request is not None
    assert job.cancel_requested_at == first_request
    assert jobs_services.job_cancel_requested(job_id=job.id) is True


# --- Reaper -----------------------------------------------------------------------------


def test_it_fails_running_jobs_with_a_stale_heartbeat_and_leaves_the_rest(
    project: Project,
) -> None:
    stale = running_job(project, heartbeat_age=STALE)
    fresh = running_job(project, heartbeat_age=timedelta(seconds=5))
    queued = JobFactory.create(project=project)
    old_but_done = JobFactory.create(
        project=project,
        status=JobStatus.SUCCEEDED,
        heartbeat_at=timezone.now() - STALE * 10,
    )

    assert jobs_services.job_reap_stale() == 1

    for job in (stale, fresh, queued, old_but_done):
        job.refresh_from_db()
    assert stale.status == JobStatus.FAILED
    assert stale.finished_at is not None
    assert "stopped responding" in stale.error
    assert f"no heartbeat for over {django_settings.JOB_STALE_AFTER_S} s" in stale.error
    assert "Start the job again." in stale.error
    assert fresh.status == JobStatus.RUNNING
    assert queued.status == JobStatus.QUEUED
    assert old_but_done.status == JobStatus.SUCCEEDED


def test_it_reaps_a_running_job_that_never_sent_a_heartbeat(project: Project) -> None:
    job = JobFactory.create(
        project=project,
        status=JobStatus.RUNNING,
        started_at=timezone.now() - STALE,
        heartbeat_at=None,
    )

    assert jobs_services.job_reap_stale() == 1
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED


def test_it_reaps_nothing_when_every_worker_is_alive(project: Project) -> None:
    running_job(project, heartbeat_age=timedelta(seconds=1))

    assert jobs_services.job_reap_stale() == 0
