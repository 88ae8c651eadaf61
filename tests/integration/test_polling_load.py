"""50 browsers polling a job's progress fragment, under `make web`'s development server
(runserver) and under gunicorn as `make run` and the image start it, on PostgreSQL.

No request may fail, and the server may not leak database connections: runserver starts
a thread per request, so it must close each connection at the end of its request
(persistent connections would leave ~50 open and exhaust PostgreSQL); gunicorn's thread
pool keeps at most one per thread.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.utils import timezone

from lifecycle_app.models import Job, JobKind, JobStatus, Project
from tests.conftest import require_redis_and_postgres
from tests.integration.conftest import worker_database_url

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]


def _load_poller() -> Any:
    """The bench's load generator (bench/ is scripts, not a package): one poller for both."""
    spec = importlib.util.spec_from_file_location("bench_polling", ROOT / "bench" / "polling.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.poll


poll = _load_poller()
POLLERS = 50
SECONDS = 4.0
GUNICORN = ["--workers", "2", "--threads", "8"]


def _connections() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return int(cursor.fetchone()[0])


def _server(kind: str, tmp_path: Path) -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        "DATABASE_URL": worker_database_url(),
        "LIFECYCLE_VAR_DIR": str(tmp_path / "var"),
        "DEBUG": "true",
        "SECURE_SSL_REDIRECT": "false",
        "SECURE_COOKIES": "false",
    }
    if kind == "runserver":
        command = [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"]
    else:
        command = [sys.executable, "-m", "gunicorn", "lifecycle_app.wsgi"]
        command += ["--bind", f"127.0.0.1:{port}", *GUNICORN]
    log = (tmp_path / f"{kind}.log").open("wb")
    proc = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{base}/healthz", timeout=1).read()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                os.killpg(proc.pid, signal.SIGKILL)
                pytest.fail((tmp_path / f"{kind}.log").read_text()[-3000:])
            time.sleep(0.2)
    try:
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
        log.close()


@pytest.mark.parametrize(("kind", "most_kept"), [("runserver", 2), ("gunicorn", 16)])
def test_fifty_pollers_get_every_answer_and_leak_no_connections(
    kind: str, most_kept: int, tmp_path: Path, project: Project, owner: User
) -> None:
    require_redis_and_postgres()
    job = Job.objects.create(
        project=project,
        kind=JobKind.FINETUNE,
        status=JobStatus.RUNNING,
        created_by=owner,
        started_at=timezone.now(),
        heartbeat_at=timezone.now(),
        progress_done=3,
        progress_total=40,
    )
    client = Client()
    client.force_login(owner)
    cookie = client.cookies["sessionid"].value
    before = _connections()

    for base in _server(kind, tmp_path):
        url = f"{base}/p/{project.slug}/jobs/{job.id}/status/"
        latencies, errors = poll(url, cookie, pollers=POLLERS, seconds=SECONDS)
        time.sleep(1.0)  # let request threads finish and close what they close
        kept = _connections() - before

        assert errors == 0, f"{errors} of {len(latencies)} requests failed"
        assert len(latencies) >= POLLERS * (SECONDS - 1)
        assert kept <= most_kept, f"{kind} kept {kept} database connections open"
