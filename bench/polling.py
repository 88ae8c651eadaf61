"""Benchmark: the job progress fragment under 50 pollers, beside a plain Django view.

What it does, in one process:
1. migrates a fresh var/ (embedded SQLite, or DATABASE_URL when set), creates a user, a
   project and a running job with measured progress;
2. starts the web server the way `make run` does (gunicorn, 2 processes x 8 threads);
3. runs 50 pollers for DURATION_S seconds, each asking for the job's status fragment once
   a second as htmx does (`hx-trigger="every 1s"`), logged in, with the HX-Request header;
4. runs the same 50 pollers against a plain Django view (`/healthz`: no template, no
   database) as the baseline, in the same run;
5. prints p50/p99 of each and `ratio` = fragment p99 / plain p99, and the errors.

Goal: p99_ms < 50 on an idle machine. Run it standalone: `.venv/bin/python bench/polling.py`.
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
POLLERS = 50
DURATION_S = float(os.environ.get("BENCH_POLL_SECONDS", "10"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def poll(url: str, cookie: str, *, pollers: int, seconds: float) -> tuple[list[float], int]:
    """`pollers` threads asking for `url` once a second for `seconds`: latencies (ms) and
    the number of failed requests (errors or a status other than 200)."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def one(offset: float) -> None:
        time.sleep(offset)  # spread the pollers over the second, as real browsers are
        while time.monotonic() < stop_at:
            began = time.monotonic()
            request = urllib.request.Request(
                url, headers={"Cookie": f"sessionid={cookie}", "HX-Request": "true"}
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    response.read()
                    ok = response.status == 200
            except Exception:
                ok = False
            took = (time.monotonic() - began) * 1000
            with lock:
                latencies.append(took)
                errors[0] += 0 if ok else 1
            time.sleep(max(0.0, 1.0 - took / 1000))

    threads = [threading.Thread(target=one, args=(i / pollers,)) for i in range(pollers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors[0]


def main() -> int:
    var = Path(tempfile.mkdtemp(prefix="lifecycle-bench-polling-"))
    port = _free_port()
    env = {
        **os.environ,
        "LIFECYCLE_VAR_DIR": str(var),
        "DEBUG": "true",
        "SECURE_SSL_REDIRECT": "false",
        "SECURE_COOKIES": "false",
        "PYTHONUNBUFFERED": "1",
    }
    os.environ.update(env)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lifecycle_app.settings")
    django.setup()
    from django.contrib.auth.models import User
    from django.test import Client
    from django.utils import timezone

    from lifecycle_app.jobs.models import Job, JobKind, JobStatus
    from lifecycle_app.projects.services import project_create

    user = User.objects.create_user("bench-polling")
    project = project_create(owner=user, name="Polling bench")
    job = Job.objects.create(
        project=project,
        kind=JobKind.FINETUNE,
        status=JobStatus.RUNNING,
        created_by=user,
        started_at=timezone.now(),
        heartbeat_at=timezone.now(),
        progress_done=17,
        progress_total=120,
        progress_unit="steps",
        message="step 17/120 · loss 1.9",
    )
    client = Client()
    client.force_login(user)
    cookie = client.cookies["sessionid"].value

    with (var / "web.log").open("wb") as log:
        web = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "lifecycle_app.wsgi", "--bind",
             f"127.0.0.1:{port}", "--workers", "2", "--threads", "8"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline or web.poll() is not None:
                    print((var / "web.log").read_text()[-2000:])
                    return 1
                time.sleep(0.2)
        fragment = f"{base}/p/{project.slug}/jobs/{job.id}/status/"
        poll(fragment, cookie, pollers=5, seconds=2)  # warm both processes
        plain, plain_errors = poll(f"{base}/healthz", cookie, pollers=POLLERS, seconds=DURATION_S)
        polled, errors = poll(fragment, cookie, pollers=POLLERS, seconds=DURATION_S)
    finally:
        os.killpg(web.pid, signal.SIGTERM)
        web.wait(timeout=20)
    p99, plain_p99 = _percentile(polled, 0.99), _percentile(plain, 0.99)
    print(f"status fragment: {len(polled)} requests, p50 {statistics.median(polled):.1f} ms, "
          f"p99 {p99:.1f} ms, {errors} errors")  # fmt: skip
    print(f"plain view:      {len(plain)} requests, p50 {statistics.median(plain):.1f} ms, "
          f"p99 {plain_p99:.1f} ms, {plain_errors} errors")  # fmt: skip
    print(
        f"RESULT p99_ms={p99:.1f} p50_ms={statistics.median(polled):.1f} "
        f"plain_p99_ms={plain_p99:.1f} ratio={p99 / plain_p99:.2f} pollers={POLLERS} "
        f"requests={len(polled)} errors={errors + plain_errors}"
    )
    return 0 if errors + plain_errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
