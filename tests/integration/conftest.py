"""A real Celery worker for integration and browser tests.

Design note. One worker process serves the whole test session: starting it and loading
the tiny model takes seconds, and a job's outcome does not depend on the worker being
fresh. It runs `celery -A workers.celery worker` as a subprocess against the pytest-django
TEST database (so it starts only after `django_db_setup`) and the test process's Redis,
so tests must use `django_db(transaction=True)`: the worker only sees committed rows.

- `shared_celery_worker` starts the worker, or hands out the one already running, so the
  browser tests' conftest can reuse it without a second process. Whichever fixture started
  it stops it, and both fixtures depend on `django_db_setup`, so the worker has closed its
  database connections before pytest-django drops the test database.
- Job ids are not reset between tests (the flush keeps sequences), so a task left over
  from an earlier test finds no queued row with its id and is skipped.
- When a test fails, the part of the worker's log written during that test is attached
  to its report (`pytest_runtest_makereport`).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from django.conf import settings

from lifecycle_app.models import ACTIVE_STATUSES, Job
from tests.conftest import require_redis_and_postgres

ROOT = Path(__file__).resolve().parents[2]
WORKER_START_TIMEOUT_S = 60.0
JOB_TIMEOUT_S = 60.0

# Every test's reports by phase ("setup", "call", "teardown"), for failure artifacts.
REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()
# The worker a test uses and the size of its log when the test started.
WORKER_LOG_START = pytest.StashKey[tuple["WorkerProcess", int]]()


@dataclass
class WorkerProcess:
    proc: subprocess.Popen[bytes]
    hostname: str
    log_path: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def log_text(self, start: int = 0) -> str:
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as fh:
            fh.seek(start)
            return fh.read().decode("utf-8", errors="replace")

    def wait_for_log(self, pattern: re.Pattern[str], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not pattern.search(self.log_text()):
            if time.monotonic() > deadline:
                pytest.fail(f"The worker never logged {pattern.pattern!r}", pytrace=False)
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the worker and its pool children at once, as the OOM killer would."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)

    def stop(self, timeout: float = 20.0) -> None:
        """Warm shutdown (SIGTERM); kill the whole process group if it hangs."""
        if self.alive():
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=timeout)
        # The pool children are in the worker's own process group (start_new_session).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)


def worker_database_url() -> str:
    """DATABASE_URL with its database name replaced by the test database's name."""
    name = settings.DATABASES["default"]["NAME"]
    return urlparse(os.environ["DATABASE_URL"])._replace(path=f"/{name}").geturl()


def _ping(hostname: str, timeout: float = 0.5) -> bool:
    from workers.celery import app

    replies = app.control.inspect(destination=[hostname], timeout=timeout).ping() or {}
    return hostname in replies


def _other_workers(hostname: str) -> list[str]:
    from workers.celery import app

    replies = app.control.ping(timeout=0.5) or []
    return sorted(name for reply in replies for name in reply if name != hostname)


def start_worker(
    log_dir: Path,
    *,
    queues: str = "cpu,gpu,serve",
    name: str = "",
    env: dict[str, str] | None = None,
    purge: bool = True,
) -> WorkerProcess:
    """Start a worker on the test database and wait until it answers. `purge` first empties
    the queues (messages left by earlier runs would point at other databases); a test that
    starts its own worker on its own queue passes a `name` and keeps the queues."""
    from workers.celery import app

    if purge:
        app.control.purge()
    hostname = f"lifecycle-test{name}-{os.getpid()}@{socket.gethostname()}"
    env = {
        **os.environ,
        "DATABASE_URL": worker_database_url(),
        "REDIS_URL": os.environ["REDIS_URL"],
        # Job folders go to a temporary var/; models stay shared (built atomically).
        "LIFECYCLE_VAR_DIR": str(log_dir / "var"),
        "LIFECYCLE_MODELS_DIR": str(settings.MODELS_DIR),
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "workers.celery",
        "worker",
        "-Q",
        queues,
        "--concurrency",
        "1",
        "--pool",
        "prefork",
        "--loglevel",
        "INFO",
        "--hostname",
        hostname,
        # Nothing to synchronise with other workers; skipping mingle saves a second.
        "--without-mingle",
        "--without-gossip",
    ]
    log_path = log_dir / f"worker{name}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    worker = WorkerProcess(proc=proc, hostname=hostname, log_path=log_path)
    deadline = time.monotonic() + WORKER_START_TIMEOUT_S
    own_broker = env["REDIS_URL"] != os.environ["REDIS_URL"]

    def ready() -> bool:
        if own_broker:  # a worker on a broker of its test's own: this app cannot ping it
            time.sleep(0.1)
            return f"{hostname} ready." in worker.log_text()
        return _ping(hostname)

    while not ready():
        if not worker.alive() or time.monotonic() > deadline:
            worker.stop()
            pytest.fail(
                f"The Celery worker did not start (exit code {proc.returncode}).\n"
                f"--- worker log ---\n{worker.log_text()}",
                pytrace=False,
            )
    others = _other_workers(hostname) if purge else []
    if others:
        warnings.warn(
            f"Other Celery workers share this broker and may take test jobs: {others}",
            stacklevel=1,
        )
    return worker


_shared: WorkerProcess | None = None


@contextlib.contextmanager
def shared_celery_worker(log_dir: Path) -> Iterator[WorkerProcess]:
    """Start the worker, or reuse the one another conftest's session fixture started."""
    global _shared
    if _shared is not None and _shared.alive():
        yield _shared
        return
    worker = start_worker(log_dir)
    _shared = worker
    try:
        yield worker
    finally:
        _shared = None
        worker.stop()


@contextlib.contextmanager
def shared_worker_paused() -> Iterator[None]:
    """Stop the session's shared worker (queues cpu, gpu and serve) for a test whose own
    worker processes must take every job on those queues (the shared one, with another
    var folder and store, would take some of them); start it again afterwards, in place,
    so later tests' `live_worker` finds it alive."""
    worker = _shared
    if worker is None or not worker.alive():
        yield
        return
    worker.stop()
    try:
        yield
    finally:
        fresh = start_worker(worker.log_path.parent)
        worker.proc, worker.hostname, worker.log_path = fresh.proc, fresh.hostname, fresh.log_path


def _cancel_active_jobs(timeout: float = 15.0) -> None:
    """Stop what a test left running, so the next test's jobs do not queue behind it."""
    from lifecycle_app.jobs.services import job_cancel

    for job in Job.objects.filter(status__in=ACTIVE_STATUSES):
        job_cancel(job=job)
    deadline = time.monotonic() + timeout
    while Job.objects.filter(status__in=ACTIVE_STATUSES).exists():
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)


def wait_for_job(
    job_id: int,
    until: Callable[[Job], bool] = lambda job: not job.is_active,
    *,
    timeout: float = JOB_TIMEOUT_S,
    poll: float = 0.05,
) -> Job:
    """Poll the Job row until `until(job)` holds; fail with its last state after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        job = Job.objects.select_related("base_model").get(id=job_id)
        if until(job):
            return job
        if time.monotonic() > deadline:
            pytest.fail(
                f"Job {job_id} did not reach the expected state within {timeout:.0f} s: "
                f"status={job.status} progress={job.progress_done}/{job.progress_total} "
                f"message={job.message!r} error={job.error!r}",
                pytrace=False,
            )
        time.sleep(poll)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # Before any fixture: without the services, pytest-django's database setup would
    # error out instead of skipping. Tests that need no worker run anywhere.
    if "live_worker" in getattr(item, "fixturenames", ()):
        require_redis_and_postgres()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    item.stash.setdefault(REPORTS, {})[report.when] = report
    if report.failed and WORKER_LOG_START in item.stash:
        worker, start = item.stash[WORKER_LOG_START]
        report.sections.append(("celery worker log", worker.log_text(start) or "(empty)"))
    return report


@pytest.fixture(scope="session")
def celery_worker_process(
    django_db_setup: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    require_redis_and_postgres()
    with shared_celery_worker(tmp_path_factory.mktemp("celery-worker")) as worker:
        yield worker


@pytest.fixture
def live_worker(
    celery_worker_process: WorkerProcess, transactional_db: None, request: pytest.FixtureRequest
) -> Iterator[WorkerProcess]:
    """The running worker; the test's rows must be committed for it to see them."""
    worker = celery_worker_process
    if not worker.alive():
        pytest.fail(
            f"The Celery worker exited (code {worker.proc.returncode}).\n"
            f"--- worker log ---\n{worker.log_text()}",
            pytrace=False,
        )
    request.node.stash[WORKER_LOG_START] = (worker, worker.log_size())
    yield worker
    _cancel_active_jobs()


@pytest.fixture
def shared_storage(live_worker: WorkerProcess, settings: Any, tmp_path: Path) -> Path:
    """Point this process's DATASETS_DIR at the worker's (`var/datasets` beside its log, in
    its LIFECYCLE_VAR_DIR), so files written here are the files the worker reads."""
    datasets = live_worker.log_path.parent / "var" / "datasets"
    datasets.mkdir(parents=True, exist_ok=True)
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    settings.DATASETS_DIR = datasets
    settings.FILE_UPLOAD_TEMP_DIR = str(uploads)
    return datasets
