from __future__ import annotations

import pytest


@pytest.fixture
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Job ids handed to the broker; nothing is sent (unit tests run no worker)."""
    sent: list[int] = []
    monkeypatch.setattr("lifecycle_app.jobs.services._enqueue", sent.append)
    return sent
