"""The worker-to-web event stream (workers/serve_reply.py) and `serve_stream`, on both
stores: Redis (REDIS_URL) and the embedded default's files. Celery's send is replaced by
a thread that plays the worker through the real EventSink."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pytest

from lifecycle_app.stages.deploy import serving
from workers import serve_reply


@pytest.fixture(params=["redis", "files"])
def store(request: pytest.FixtureRequest, settings: Any, tmp_path: Any) -> str:
    settings.VAR_DIR = tmp_path
    if request.param == "files":
        settings.REDIS_URL = None
    else:
        url = os.environ.get("REDIS_URL")
        if not url:
            pytest.skip("REDIS_URL is not set")
        settings.REDIS_URL = url
        serve_reply._redis_client = None
    return str(request.param)


def play(
    monkeypatch: pytest.MonkeyPatch, events: list[dict[str, Any]], gap: float = 0.0
) -> dict[str, Any]:
    """Replace the Celery send with a worker thread that sends `events` and stops early
    when cancelled; returns what it saw."""
    seen: dict[str, Any] = {"sent": 0, "cancelled": False}

    class App:
        def send_task(self, name: str, args: list[Any], **kw: Any) -> None:
            assert name == "serve.stream" and kw["queue"] == "serve"
            key = args[0]

            def run() -> None:
                sink = serve_reply.EventSink(key)
                for event in events:
                    if sink.cancelled(every_s=0):
                        seen["cancelled"] = True
                        return
                    sink.send(event)
                    seen["sent"] += 1
                    time.sleep(gap)

            threading.Thread(target=run, daemon=True).start()

    monkeypatch.setattr("workers.celery.app", App())
    return seen


def test_events_arrive_in_order_and_end_at_done(
    store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = [{"type": "start"}] + [{"type": "delta", "text": str(i)} for i in range(30)]
    play(monkeypatch, [*script, {"type": "done", "answer": "x"}, {"type": "delta", "text": "late"}])

    got = list(serving.serve_stream(model_path="/m", payload={}, timeout=5))

    assert got[:-1] == script
    assert got[-1]["type"] == "done"


def test_no_event_in_time_ends_with_a_504_error(
    store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    play(monkeypatch, [{"type": "start"}])

    got = list(serving.serve_stream(model_path="/m", payload={}, timeout=1))

    assert got[0] == {"type": "start"}
    assert got[-1]["type"] == "error" and got[-1]["status"] == 504


def test_closing_the_stream_early_cancels_the_worker(
    store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = [{"type": "delta", "text": str(i)} for i in range(200)]
    seen = play(monkeypatch, events, gap=0.01)

    stream = serving.serve_stream(model_path="/m", payload={}, timeout=5)
    assert next(stream)["type"] == "delta"
    stream.close()
    deadline = time.monotonic() + 5
    while not seen["cancelled"] and time.monotonic() < deadline:
        time.sleep(0.02)

    assert seen["cancelled"] and seen["sent"] < 200


def test_an_unreachable_queue_is_a_503_error_event(monkeypatch: pytest.MonkeyPatch) -> None:
    class Down:
        def send_task(self, *a: Any, **kw: Any) -> None:
            raise ConnectionError("refused")

    monkeypatch.setattr("workers.celery.app", Down())

    assert [e["status"] for e in serving.serve_stream(model_path="/m", payload={}, timeout=1)] == [
        503
    ]
