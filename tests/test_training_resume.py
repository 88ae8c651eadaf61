"""Fault test: a fine-tuning job survives its worker being SIGKILLed mid-run.

A worker of this test's own (on its own queue, so the session's shared worker never takes
the job) trains the tiny model with a checkpoint every few steps. Once a checkpoint exists
and training has gone past it, the worker and its pool child get SIGKILL, as the kernel's
OOM killer would do. Nothing is cleaned up: the Job row still says "running" with an old
heartbeat. A second worker then starts; its start-up reaper sees the stale heartbeat,
requeues the job (attempt 2 of 3), and the job resumes from the checkpoint: its step count
continues from there instead of restarting at 1, and it ends with exactly one artifact and
one candidate model.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import User

from lifecycle_app.models import (
    Artifact,
    CatalogModel,
    Job,
    JobStatus,
    MetricPoint,
    Project,
)
from tests.conftest import require_redis_and_postgres
from tests.integration.conftest import WorkerProcess, start_worker, wait_for_job
from tests.integration.sample_data import sample_dialogues, start_finetune
from workers.ml.training import common

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

QUEUE = "resume-test"
STALE_AFTER_S = 5  # the smallest the setting allows; heartbeats come every 1.25 s
MAX_STEPS = 400
CHECKPOINT_EVERY = 20


@pytest.fixture
def storage(tmp_path: Path, settings: object) -> Path:
    """One var/ folder for both workers and this process: shared artifact storage."""
    require_redis_and_postgres()
    var = tmp_path / "var"
    (var / "datasets").mkdir(parents=True)
    (tmp_path / "uploads").mkdir()
    settings.DATASETS_DIR = var / "datasets"  # type: ignore[attr-defined]
    settings.JOBS_DIR = var / "jobs"  # type: ignore[attr-defined]
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path / "uploads")  # type: ignore[attr-defined]
    return tmp_path


@pytest.fixture
def workers(storage: Path) -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop()


def test_a_killed_worker_s_training_job_resumes_from_its_checkpoint(
    storage: Path,
    workers: list[WorkerProcess],
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    tiny_folder: Path,
) -> None:
    env = {"LIFECYCLE_JOB_STALE_AFTER_S": str(STALE_AFTER_S)}
    first = start_worker(storage, queues=QUEUE, name="-first", env=env, purge=False)
    workers.append(first)
    dataset = sample_dialogues(project, owner, storage / "uploads", fractions=(0.8, 0.1, 0.1))
    job = start_finetune(
        project,
        owner,
        tiny_model,
        dataset,
        queue=QUEUE,
        max_steps=MAX_STEPS,
        checkpoint_every=CHECKPOINT_EVERY,
    )
    run = storage / "var" / "jobs" / str(job.id) / "attempt-1" / "run"

    # Past a checkpoint and a few steps beyond it, but well before the end.
    job = wait_for_job(
        job.id,
        lambda j: (
            not j.is_active
            or (
                bool(common.checkpoints(run))
                and j.progress_done >= common._step_of(common.checkpoints(run)[-1]) + 3
            )
        ),
        timeout=120,
        poll=0.02,
    )
    assert job.status == JobStatus.RUNNING, job.error
    first.kill()
    assert not first.alive()
    killed_at = Job.objects.get(id=job.id).progress_done
    checkpoint = common._step_of(common.checkpoints(run)[-1])
    assert 0 < checkpoint < killed_at < MAX_STEPS, (checkpoint, killed_at)

    # Nobody cleaned up: the row still says running, with a heartbeat that goes stale.
    lost = Job.objects.get(id=job.id)
    assert lost.status == JobStatus.RUNNING
    assert lost.attempt == 1
    assert lost.heartbeat_at is not None
    while (time.time() - lost.heartbeat_at.timestamp()) <= STALE_AFTER_S + 0.5:
        time.sleep(0.1)

    second = start_worker(storage, queues=QUEUE, name="-second", env=env, purge=False)
    workers.append(second)

    # The second worker's reaper requeues the job, and the worker resumes it.
    resumed = wait_for_job(job.id, lambda j: j.attempt == 2 and j.status == JobStatus.RUNNING)
    lowest = resumed.progress_done
    while True:
        current = Job.objects.get(id=job.id)
        if not current.is_active:
            break
        lowest = min(lowest, current.progress_done)
        time.sleep(0.02)
    job = wait_for_job(job.id, timeout=180)

    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.worker == second.hostname
    assert job.attempt == 2
    # The step count continued from the checkpoint: it never went back below it.
    assert lowest >= checkpoint, (lowest, checkpoint)
    assert job.progress_done == MAX_STEPS
    assert job.result["summary"]["steps"] == MAX_STEPS
    assert job.result["summary"]["resumed_from_step"] == checkpoint
    # Every step has one train-loss point, whichever attempt wrote it.
    steps = list(
        MetricPoint.objects.filter(job=job, name="train_loss")
        .order_by("step")
        .values_list("step", flat=True)
    )
    assert steps == list(range(1, MAX_STEPS + 1))
    # Exactly one final artifact and one candidate, and it is on the shared storage.
    artifacts = list(Artifact.objects.filter(job=job))
    assert len(artifacts) == 1
    assert Path(artifacts[0].path).is_dir() or Path(artifacts[0].path).is_file()
    assert CatalogModel.objects.filter(trained_by_job=job).count() == 1
    assert "requeued [" in second.log_text()
    # The second attempt wrote in its own folder, starting from the first one's checkpoint;
    # its checkpoints are gone once the final weights are saved; nothing half-written stays.
    resumed_run = run.parent.parent / "attempt-2" / "run"
    assert artifacts[0].path.startswith(str(resumed_run))
    assert sorted(p.name for p in resumed_run.iterdir()) == ["final"]
