"""Fault tests of the job engine: real worker processes, Redis and PostgreSQL, no mocks.

Each test reproduces one defect found by the fault-injection pass (issue 20) and checks
the behaviour that replaced it:

- a worker that stalls (SIGSTOP past the stale limit, then SIGCONT) is fenced: the job
  is resumed by another worker, the stalled one stops without writing, one artifact;
- a broker restarted without persistence loses its queued messages: the reaper sends
  them again and every job succeeds;
- `pg_terminate_backend` during a fine-tune and during a trial: both succeed;
- the reaper finds a dead job within twice the stale limit while the only worker trains;
- a hung broker (SIGSTOP) fails a submission within 10 s with a readable message;
- a full disk and a folder the worker may not write to give messages a person can act on.

Workers run on queues of their own (the session's shared worker never takes these jobs)
with a short stale limit, and share one var/ folder with this process.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.utils import timezone

from lifecycle_app.jobs.services import QUEUE_DOWN_MESSAGE
from lifecycle_app.models import (
    Artifact,
    CatalogModel,
    Job,
    JobKind,
    JobStatus,
    Project,
    TrialExample,
)
from lifecycle_app.stages.prompt.building import snapshot
from lifecycle_app.stages.prompt.playground import job_create_generate
from lifecycle_app.stages.prompt.services import trial_create
from tests.conftest import require_redis_and_postgres
from tests.integration.conftest import WorkerProcess, start_worker, wait_for_job
from tests.integration.sample_data import sample_dialogues, start_finetune, summary_template
from workers.ml.params import GenerateParams, TrialParams
from workers.ml.training import common

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

STALE_AFTER_S = 5  # the smallest the setting allows; heartbeats every 1.25 s, reaper 2.5 s
FAST = {"LIFECYCLE_JOB_STALE_AFTER_S": str(STALE_AFTER_S), "LIFECYCLE_JOB_RESEND_AFTER_S": "3"}


@pytest.fixture
def storage(tmp_path: Path, settings: Any) -> Path:
    """One var/ folder for the test's workers and this process: shared artifact storage."""
    require_redis_and_postgres()
    var = tmp_path / "var"
    (var / "datasets").mkdir(parents=True)
    (tmp_path / "uploads").mkdir()
    settings.DATASETS_DIR = var / "datasets"
    settings.JOBS_DIR = var / "jobs"
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path / "uploads")
    return tmp_path


@pytest.fixture
def workers(storage: Path) -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.proc.pid, signal.SIGCONT)
        worker.stop()


def _worker(
    storage: Path, workers: list[WorkerProcess], queue: str, name: str, **env: str
) -> WorkerProcess:
    worker = start_worker(storage, queues=queue, name=name, env={**FAST, **env}, purge=False)
    workers.append(worker)
    return worker


def _to_queue(job: Job, queue: str) -> Job:
    Job.objects.filter(id=job.id).update(queue=queue)
    job.queue = queue
    return job


def _generate(project: Project, owner: User, model: CatalogModel, queue: str, tokens: int) -> Job:
    with transaction.atomic():
        job = job_create_generate(
            project=project,
            user=owner,
            base_model=model,
            params=GenerateParams(
                model_ref=model.slug, prompt="Hello there", max_new_tokens=tokens
            ),
        )
        return _to_queue(job, queue)


def _start_training(
    storage: Path, project: Project, owner: User, model: CatalogModel, queue: str, **params: Any
) -> Job:
    """A LoRA run of the tiny model on the sample dialogues, on the test's own queue."""
    dataset = sample_dialogues(project, owner, storage / "uploads", fractions=(0.8, 0.1, 0.1))
    return start_finetune(project, owner, model, dataset, queue=queue, **params)


def _terminate_worker_connections() -> int:
    """Kill every other session on the test database, as a failover or an admin would."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return int(cursor.fetchone()[0])


def _one_artifact(job: Job) -> Artifact:
    artifacts = list(Artifact.objects.filter(job=job))
    assert len(artifacts) == 1, artifacts
    assert CatalogModel.objects.filter(trained_by_job=job).count() == 1
    return artifacts[0]


# --- 1. A stalled worker is fenced --------------------------------------------------------


def test_a_stalled_worker_is_fenced_and_the_job_has_one_execution_s_writes(
    storage: Path,
    workers: list[WorkerProcess],
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
) -> None:
    queue = "faults-stall"
    first = _worker(storage, workers, queue, "-stalls")
    job = _start_training(
        storage, project, owner, tiny_model, queue, max_steps=400, checkpoint_every=20
    )
    first_run = storage / "var" / "jobs" / str(job.id) / "attempt-1" / "run"
    wait_for_job(
        job.id,
        lambda j: not j.is_active or (bool(common.checkpoints(first_run)) and j.progress_done > 40),
        timeout=120,
        poll=0.02,
    )
    os.killpg(first.proc.pid, signal.SIGSTOP)  # a VM pause: alive, silent
    stalled = Job.objects.get(id=job.id)
    assert stalled.heartbeat_at is not None
    while (time.time() - stalled.heartbeat_at.timestamp()) <= STALE_AFTER_S + 0.5:
        time.sleep(0.1)  # stale: any reaper (even one that runs only at start-up) hands it on
    second = _worker(storage, workers, queue, "-takes-over")
    wait_for_job(job.id, lambda j: j.attempt == 2 and j.status == JobStatus.RUNNING, timeout=60)

    os.killpg(first.proc.pid, signal.SIGCONT)  # the stalled worker wakes up and carries on
    seen = [Job.objects.get(id=job.id).progress_done]
    while (current := Job.objects.get(id=job.id)).is_active:
        seen.append(current.progress_done)
        time.sleep(0.02)
    job = wait_for_job(job.id, timeout=180)

    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.worker == second.hostname and job.attempt == 2
    assert seen == sorted(seen), "progress went backwards"
    assert job.progress_done == job.progress_total == 400
    # The late worker was refused and stopped; it wrote no final folder of its own.
    first.wait_for_log(re.compile(r"stopped without writing|was superseded"))
    assert not (first_run / "final").exists()
    artifact = _one_artifact(job)
    assert "/attempt-2/" in artifact.path
    # Once the job succeeded nothing changes it any more.
    finished = Job.objects.get(id=job.id)
    time.sleep(2 * 1.25)
    assert Job.objects.get(id=job.id).heartbeat_at == finished.heartbeat_at
    spans = finished.attempt_spans
    assert [s["attempt"] for s in spans] == [1, 2]
    assert spans[0]["outcome"] == "lost" and spans[1]["outcome"] == "succeeded"
    assert finished.started_at is not None and finished.started_at.isoformat() <= str(
        spans[0]["started_at"]
    )


# --- 2. Lost broker messages are sent again ---------------------------------------------


class OwnRedis:
    """A redis-server of the test's own on a free port, without persistence, that the test
    can restart (losing every queue) or freeze (SIGSTOP: up, answering nothing)."""

    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no"]
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return proc
            time.sleep(0.05)
        proc.kill()
        pytest.fail("redis-server did not start")

    def restart(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.proc = self._start()

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGCONT)
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def own_broker(monkeypatch: pytest.MonkeyPatch) -> Iterator[OwnRedis]:
    """A Redis of the test's own; this process sends its tasks there."""
    from workers.celery import app

    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    redis = OwnRedis()
    send_task = app.send_task

    def send_to_own(*args: Any, **kwargs: Any) -> Any:
        with app.connection_for_write(redis.url) as conn:
            kwargs["connection"] = conn
            return send_task(*args, **kwargs)

    monkeypatch.setattr(app, "send_task", send_to_own)
    try:
        yield redis
    finally:
        redis.close()


def test_jobs_queued_when_the_broker_restarts_are_sent_again_and_succeed(
    storage: Path,
    workers: list[WorkerProcess],
    own_broker: OwnRedis,
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    settings: Any,
) -> None:
    settings.JOB_LIMIT_ACTIVE_PER_USER = settings.JOB_LIMIT_ACTIVE_PER_PROJECT = 0
    queue = "faults-broker"
    _worker(storage, workers, queue, "-broker", REDIS_URL=own_broker.url)
    blocker = _generate(project, owner, tiny_model, queue, tokens=400)
    wait_for_job(blocker.id, lambda j: j.status == JobStatus.RUNNING, timeout=60)
    queued = [_generate(project, owner, tiny_model, queue, tokens=8) for _ in range(3)]
    assert all(Job.objects.get(id=j.id).status == JobStatus.QUEUED for j in queued)

    own_broker.restart()  # no persistence: the queued messages are gone

    for job in [blocker, *queued]:
        done = wait_for_job(job.id, timeout=120)
        assert done.status == JobStatus.SUCCEEDED, (done.id, done.error)
    assert any(Job.objects.get(id=j.id).sends >= 2 for j in queued)


# --- 3 and 4. Database blips ------------------------------------------------------------


def test_a_database_blip_during_a_fine_tune_is_ridden_out(
    storage: Path,
    workers: list[WorkerProcess],
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
) -> None:
    queue = "faults-db-ft"
    _worker(storage, workers, queue, "-db-ft")
    job = _start_training(
        storage, project, owner, tiny_model, queue, max_steps=200, checkpoint_every=20
    )
    wait_for_job(job.id, lambda j: not j.is_active or j.progress_done >= 30, timeout=120)
    killed = 0
    for _ in range(3):  # more than once: during a step, a heartbeat, a cancel check
        killed += _terminate_worker_connections()
        time.sleep(0.7)
    assert killed >= 1

    job = wait_for_job(job.id, timeout=180)

    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.progress_done == 200
    _one_artifact(job)


def test_a_database_blip_during_a_trial_is_not_mistaken_for_bad_rows(
    storage: Path,
    workers: list[WorkerProcess],
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
) -> None:
    queue = "faults-db-trial"
    worker = _worker(storage, workers, queue, "-db-trial")
    dataset = sample_dialogues(project, owner, storage / "uploads", fractions=(0.2, 0.7, 0.1))
    template = summary_template(project, owner)
    params = TrialParams(
        model_ref=tiny_model.slug,
        dataset_id=dataset.id,
        template=snapshot(template),
        n_rows=100,
        batch_size=2,
        max_new_tokens=24,
        overflow="truncate",
    )
    with transaction.atomic():
        job = trial_create(
            project=project,
            user=owner,
            base_model=tiny_model,
            dataset=dataset,
            template=template,
            params=params,
            rows=params.n_rows,
        )
        _to_queue(job, queue)
    wait_for_job(job.id, lambda j: not j.is_active or j.progress_done >= 10, timeout=120)
    for _ in range(3):
        _terminate_worker_connections()
        time.sleep(0.5)

    job = wait_for_job(job.id, timeout=180)

    assert job.status == JobStatus.SUCCEEDED, job.error
    rows = TrialExample.objects.filter(job=job)
    assert rows.count() == job.progress_total
    assert not rows.filter(status="failed").exists()
    assert "Out of memory" not in worker.log_text()


# --- 5. The reaper never waits -----------------------------------------------------------


def test_a_dead_job_is_reaped_within_twice_the_stale_limit_while_the_only_worker_trains(
    storage: Path,
    workers: list[WorkerProcess],
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
) -> None:
    queue = "faults-reaper"
    _worker(storage, workers, queue, "-reaper")
    long_run = _start_training(
        storage, project, owner, tiny_model, queue, max_steps=2000, checkpoint_every=0
    )
    wait_for_job(long_run.id, lambda j: j.status == JobStatus.RUNNING, timeout=60)
    # A job whose worker died a moment ago: its heartbeat goes stale in STALE_AFTER_S.
    now = timezone.now()
    dead = Job.objects.create(
        project=project,
        kind=JobKind.GENERATE,
        status=JobStatus.RUNNING,
        queue=queue,
        created_by=owner,
        attempt=1,
        started_at=now,
        heartbeat_at=now,
    )

    reaped = wait_for_job(dead.id, timeout=4 * STALE_AFTER_S, poll=0.1)
    assert reaped.finished_at is not None
    waited = (reaped.finished_at - now).total_seconds()

    assert reaped.status == JobStatus.FAILED
    assert "stopped responding" in reaped.error
    assert waited <= 2 * STALE_AFTER_S, waited
    assert Job.objects.get(id=long_run.id).status == JobStatus.RUNNING  # still busy


# --- 6. A hung broker --------------------------------------------------------------------


def test_a_hung_broker_fails_a_submission_within_ten_seconds(
    storage: Path, own_broker: OwnRedis, project: Project, owner: User, tiny_model: CatalogModel
) -> None:
    pid = own_broker.proc.pid
    os.kill(pid, signal.SIGSTOP)  # up, accepting connections, answering nothing
    outcome: dict[str, Any] = {}

    def submit() -> None:
        try:
            outcome["job"] = _generate(project, owner, tiny_model, "faults-hung", tokens=8)
        finally:
            connection.close()

    started = time.monotonic()
    thread = threading.Thread(target=submit)
    thread.start()
    thread.join(timeout=30)
    elapsed = time.monotonic() - started
    os.kill(pid, signal.SIGCONT)

    assert not thread.is_alive(), "the submission hung"
    assert elapsed < 10, elapsed
    job = Job.objects.get(id=outcome["job"].id)
    assert job.status == JobStatus.FAILED
    assert job.error == QUEUE_DOWN_MESSAGE


# --- 7. Disk full, no permission -----------------------------------------------------------


def _generate_with_folder(
    project: Project, owner: User, model: CatalogModel, queue: str, prepare: Any
) -> Job:
    """Create the job and, before its message goes out, prepare its job folder."""
    from django.conf import settings

    with transaction.atomic():
        job = _generate(project, owner, model, queue, tokens=8)
        prepare(Path(settings.JOBS_DIR) / str(job.id))
    return job


def test_disk_full_and_permission_errors_say_what_to_do(
    storage: Path,
    workers: list[WorkerProcess],
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
) -> None:
    queue = "faults-disk"
    _worker(storage, workers, queue, "-disk")

    def full_disk(folder: Path) -> None:
        for where in (folder, folder / "attempt-1"):  # today's layout and the old one
            where.mkdir(parents=True, exist_ok=True)
            (where / "params.json").symlink_to("/dev/full")  # writes fail with ENOSPC

    def no_permission(folder: Path) -> None:
        folder.parent.mkdir(parents=True, exist_ok=True)
        # Even root may not create files in sysfs: a real EACCES/EPERM from the kernel.
        folder.symlink_to("/sys/kernel", target_is_directory=True)

    full = wait_for_job(
        _generate_with_folder(project, owner, tiny_model, queue, full_disk).id, timeout=60
    )
    denied = wait_for_job(
        _generate_with_folder(project, owner, tiny_model, queue, no_permission).id, timeout=60
    )

    assert full.status == JobStatus.FAILED
    assert "ran out of disk space" in full.error and "No space left" not in full.error
    assert denied.status == JobStatus.FAILED
    assert "not allowed to write to" in denied.error
    assert "/.tmp" not in denied.error and "Errno" not in denied.error
