"""Serving overhead: the generation API end to end vs the same generation in-process.

Runs standalone: `.venv/bin/python bench/serving.py [--skip-export]`. In a temporary var/ (SQLite and the
filesystem broker, or PostgreSQL/Redis when DATABASE_URL/REDIS_URL are set) it
1. migrates, creates a project, and runs a real export job (merged safetensors of the
   bundled SmolLM2-135M-Instruct, no dataset) on a CPU worker, then deploys the variant
   and creates an API token through the services, as the pages do (`--skip-export`:
   deploys the converted bundled folder as a finished safetensors variant instead, the
   same weights without the export job's minutes of measuring on a loaded machine);
2. starts the web server (gunicorn) and the dedicated serving worker (queue "serve"),
   and stops the CPU worker so it does not compete for the cores;
3. sends 20 sequential requests to POST /api/projects/<slug>/generate (32 new tokens,
   greedy), interleaved with 20 calls of the same generation in this process
   (`workers.ml.serving.complete` on the same folder), after one warm-up each, so both
   see the same machine load.
Prints p50/p95 of both and the overhead ratio (endpoint p50 / direct p50; target <= 1.3).
4. streams: 10 streamed requests to POST /v1/chat/completions (the OpenAI-compatible
   endpoint, SSE, same prompt and settings) interleaved with 10 in-process
   `stream_generate` calls, after one warm-up each; time to first token is to the first
   content chunk read by the client vs the first `on_delta` in-process.
Ends with `RESULT p50_ms=<endpoint p50> p95_ms=<endpoint p95> overhead=<ratio>
ttft_ms=<endpoint ttft p50> ttft_direct_ms=<in-process ttft p50> ttft_overhead=<ratio>
stream_tokens_per_s=<endpoint, after the first token>` (ttft goal <= 1.3 too).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Fewer on a crowded machine: BENCH_SERVING_REQUESTS / BENCH_SERVING_STREAMS.
N_REQUESTS = int(os.environ.get("BENCH_SERVING_REQUESTS", "20"))
N_STREAMS = int(os.environ.get("BENCH_SERVING_STREAMS", "10"))
MAX_TOKENS = 32
MESSAGES = [
    {
        "role": "user",
        "content": "Summarize the following dialogue in one or two sentences.\n\nDialogue:\n"
        "A: Could you send me the report by Friday?\nB: Sure, I will have it done by "
        "Thursday afternoon and copy Sam.\nSummary:",
    }
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as fh:
        return subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main() -> int:
    var = Path(tempfile.mkdtemp(prefix="lifecycle-bench-serving-"))
    models_dir = os.environ.get("LIFECYCLE_MODELS_DIR") or str(ROOT / "var" / "models")
    port = _free_port()
    env = {
        **os.environ,
        "LIFECYCLE_VAR_DIR": str(var),
        "LIFECYCLE_MODELS_DIR": models_dir,
        "DEBUG": "true",
        "SECURE_SSL_REDIRECT": "false",
        "SECURE_COOKIES": "false",
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        "LIFECYCLE_JOB_LIMIT_PER_USER": "0",
        "LIFECYCLE_JOB_LIMIT_PER_PROJECT": "0",
    }
    os.environ.update(env)
    py = sys.executable
    subprocess.run(
        [py, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
    )

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lifecycle_app.settings")
    django.setup()
    from django.contrib.auth.models import User

    from lifecycle_app.catalog.models import CatalogModel
    from lifecycle_app.jobs.models import Job, JobKind, JobStatus
    from lifecycle_app.projects.services import project_create
    from lifecycle_app.stages.deploy.models import ModelVariant
    from lifecycle_app.stages.deploy.services import (
        api_token_create,
        export_create,
        variant_deploy,
    )
    from workers.ml import loading as models
    from workers.ml.params import ExportParams, ServeRequest
    from workers.ml.planner import shape as planner

    bundled_path = models.resolve(models.ModelSpec("bundled"), Path(models_dir))
    info = models.describe(bundled_path)
    bundled, _ = CatalogModel.objects.get_or_create(
        slug="smollm2-135m-instruct",
        defaults={
            "name": "SmolLM2-135M-Instruct",
            "source": "bundled",
            "family": info.family,
            "architecture": info.architecture,
            "n_params": info.n_params,
            "context_length": info.context_length,
            "weights_present": True,
            "shape": planner.shape_from_config(bundled_path).to_json(),
        },
    )
    user = User.objects.create_user("bench")
    project = project_create(owner=user, name="Serving bench")

    cpu = _start(
        [
            py,
            "-m",
            "celery",
            "-A",
            "workers.celery",
            "worker",
            "-Q",
            "cpu",
            "--concurrency",
            "1",
            "--hostname",
            f"bench-cpu-{os.getpid()}@%h",
            "--without-mingle",
            "--without-gossip",
        ],
        env,
        var / "cpu-worker.log",
    )
    serve = _start(
        [
            py,
            "-m",
            "celery",
            "-A",
            "workers.celery",
            "worker",
            "-Q",
            "serve",
            "--concurrency",
            "1",
            "--hostname",
            f"bench-serve-{os.getpid()}@%h",
            "--without-mingle",
            "--without-gossip",
        ],
        env,
        var / "serve-worker.log",
    )
    web = _start(
        [
            py,
            "-m",
            "gunicorn",
            "lifecycle_app.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--threads",
            "4",
            "--timeout",
            "120",
        ],
        env,
        var / "web.log",
    )
    try:
        if "--skip-export" in sys.argv:
            job = Job.objects.create(
                project=project,
                created_by=user,
                kind=JobKind.EXPORT,
                status=JobStatus.SUCCEEDED,
                base_model=bundled,
                params=ExportParams(kind="safetensors", model_ref=bundled.slug).model_dump(),
            )
            ModelVariant.objects.create(
                project=project, job=job, kind="safetensors", parent=bundled, path=str(bundled_path)
            )
            _stop(cpu)
        else:
            began = time.monotonic()
            job = export_create(
                project=project,
                user=user,
                source=bundled,
                dataset=None,
                params=ExportParams(
                    kind="safetensors", model_ref=bundled.slug, max_new_tokens=MAX_TOKENS
                ),
            )
            while True:
                job = Job.objects.get(id=job.id)
                if not job.is_active:
                    break
                if time.monotonic() - began > 600:
                    raise SystemExit(f"export job still {job.status} after 10 min: {job.message}")
                time.sleep(0.5)
            if job.status != JobStatus.SUCCEEDED:
                raise SystemExit(f"export job {job.status}: {job.error}")
            print(f"export job #{job.id}: {job.message} ({time.monotonic() - began:.1f} s)")
            _stop(cpu)
        variant = ModelVariant.objects.get(job=job)
        variant_deploy(project=project, variant=variant, actor=user)
        _, token = api_token_create(project=project, actor=user, name="bench")

        url = f"http://127.0.0.1:{port}/api/projects/{project.slug}/generate"
        body = json.dumps({"messages": MESSAGES, "max_tokens": MAX_TOKENS}).encode()

        def call_endpoint() -> tuple[float, dict[str, object]]:
            request = urllib.request.Request(
                url,
                data=body,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
            start = time.perf_counter()
            with urllib.request.urlopen(request, timeout=600) as response:
                data = json.loads(response.read())
            return time.perf_counter() - start, data

        deadline = time.monotonic() + 300  # workers start slowly on a loaded machine
        while True:  # the web server and the serving worker are up when this answers
            try:
                _, first = call_endpoint()
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

        from workers.ml import serving as ml_serve

        loaded = ml_serve.warm_model(variant.path, Path(models_dir))
        request = ServeRequest(messages=MESSAGES, max_tokens=MAX_TOKENS)

        def call_direct() -> tuple[float, dict[str, object]]:
            start = time.perf_counter()
            out = ml_serve.complete(loaded, request)
            return time.perf_counter() - start, out

        direct_first = call_direct()[1]  # warm-up
        endpoint_s, direct_s = [], []
        same = True
        for _ in range(N_REQUESTS):
            seconds, data = call_endpoint()
            endpoint_s.append(seconds)
            text = data["choices"][0]["message"]["content"]  # type: ignore[index]
            d_seconds, out = call_direct()
            direct_s.append(d_seconds)
            same = same and text == out["text"] == direct_first["text"]
        tokens = first["usage"]["completion_tokens"]  # type: ignore[index]
        p50, p95 = _percentile(endpoint_s, 0.5) * 1000, _percentile(endpoint_s, 0.95) * 1000
        d50, d95 = _percentile(direct_s, 0.5) * 1000, _percentile(direct_s, 0.95) * 1000
        overhead = p50 / d50
        print(f"model: {variant.path} ({tokens} new tokens per request, greedy)")
        print(
            f"endpoint: p50 {p50:.1f} ms  p95 {p95:.1f} ms  ({N_REQUESTS} sequential HTTP requests)"
        )
        print(f"direct:   p50 {d50:.1f} ms  p95 {d95:.1f} ms  (same generation in-process)")
        print(
            f"overhead: {overhead:.3f} (target <= 1.3); mean extra {statistics.mean(endpoint_s) * 1000 - statistics.mean(direct_s) * 1000:.1f} ms; identical outputs: {str(same).lower()}"
        )
        model = variant.candidate.slug if variant.candidate else f"variant-{variant.id}"
        streams = _streams(f"http://127.0.0.1:{port}/v1/chat/completions", token, model, loaded)
        ttft, ttft_direct, rate = streams
        ttft_overhead = ttft / ttft_direct
        print(
            f"RESULT p50_ms={p50:.1f} p95_ms={p95:.1f} overhead={overhead:.3f} "
            f"ttft_ms={ttft:.1f} ttft_direct_ms={ttft_direct:.1f} "
            f"ttft_overhead={ttft_overhead:.3f} stream_tokens_per_s={rate:.1f}"
        )
        return 0 if overhead <= 1.3 and same and ttft_overhead <= 1.3 else 1
    finally:
        for proc in (web, serve, cpu):
            _stop(proc)


def _streams(url: str, token: str, model: str, loaded: object) -> tuple[float, float, float]:
    """Time to first token streamed through the endpoint vs in-process `stream_generate`
    (p50 ms of each), and the endpoint's streamed tokens/s after its first token."""
    from workers.ml import serving as ml_serve
    from workers.ml.generation.streaming import stream_generate

    payload = ml_serve.ChatPayload(messages=MESSAGES, max_tokens=MAX_TOKENS)
    prompt = ml_serve.chat_prompt(loaded.tokenizer, MESSAGES, None)  # type: ignore[attr-defined]
    body = json.dumps(
        {
            "model": model,
            "messages": MESSAGES,
            "max_tokens": MAX_TOKENS,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    ).encode()

    def endpoint() -> tuple[float, float, str]:
        request = urllib.request.Request(
            url,
            data=body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        start = time.perf_counter()
        first, tokens, text = 0.0, 0, ""
        with urllib.request.urlopen(request, timeout=600) as response:
            for raw in response:
                line = raw.decode().strip()
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                piece = chunk["choices"][0]["delta"].get("content") if chunk["choices"] else ""
                if piece:
                    first = first or time.perf_counter() - start
                    text += piece
                if chunk.get("usage"):
                    tokens = chunk["usage"]["completion_tokens"]
        total = time.perf_counter() - start
        return first, (tokens - 1) / (total - first) if total > first else 0.0, text

    def direct() -> tuple[float, str]:
        start = time.perf_counter()
        seen: list[float] = []

        def on_delta(piece: str) -> None:
            if not seen:
                seen.append(time.perf_counter() - start)

        out = stream_generate(loaded, prompt, payload.settings(), on_delta)
        return seen[0], out.text

    endpoint()
    direct()  # warm-up
    firsts, directs, rates = [], [], []
    same = True
    for _ in range(N_STREAMS):
        first, rate, text = endpoint()
        d_first, d_text = direct()
        firsts.append(first)
        rates.append(rate)
        directs.append(d_first)
        same = same and text == d_text
    t50, d50 = _percentile(firsts, 0.5) * 1000, _percentile(directs, 0.5) * 1000
    print(
        f"stream ttft: endpoint p50 {t50:.1f} ms p95 {_percentile(firsts, 0.95) * 1000:.1f} ms; "
        f"in-process p50 {d50:.1f} ms; ratio {t50 / d50:.3f} (target <= 1.3); "
        f"streamed {statistics.median(rates):.1f} tokens/s; identical text: {str(same).lower()}"
    )
    return t50, d50, statistics.median(rates)


if __name__ == "__main__":
    sys.exit(main())
