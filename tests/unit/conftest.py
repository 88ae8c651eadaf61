from __future__ import annotations

import pytest


@pytest.fixture
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Job ids handed to the broker; nothing is sent (unit tests run no worker)."""
    sent: list[int] = []
    monkeypatch.setattr("lifecycle_app.jobs.services._enqueue", sent.append)
    return sent


@pytest.fixture
def search_in_process(monkeypatch: pytest.MonkeyPatch) -> list[list[object]]:
    """The serving worker's knowledge search run in this process: the page's search box
    sends "serve.search" to the serving worker; here the task's own function answers."""
    from lifecycle_app.stages.deploy import serving
    from workers.tasks.serve import search_hits

    asked: list[list[object]] = []

    def serve_call(task: str, args: list[object], timeout: float | None = None) -> object:
        assert task == "serve.search"
        asked.append(args)
        folder, embedder, query, k = args
        return {"ok": True, "hits": search_hits(str(folder), str(embedder), str(query), int(k))}  # type: ignore[call-overload]

    monkeypatch.setattr(serving, "serve_call", serve_call)
    return asked
