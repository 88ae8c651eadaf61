"""Replies from the serving worker to the web request waiting for them.

Design note. An API request is a Celery task on the "serve" queue (the message carries
the request and a fresh reply key); the web process then blocks on that key until the
worker answers or the timeout passes. Celery results are off in this app (Job rows are
the source of truth for jobs), and a request is not a job: it must be fast and leave no
row behind. So the reply goes through the broker's own store:

- Redis (REDIS_URL): the worker LPUSHes the JSON reply on `lifecycle:serve:<key>` with a
  short expiry; the web BLPOPs it (no polling, a few milliseconds).
- Embedded default (filesystem broker): the worker writes `<key>.json` atomically into
  var/serve-replies; the web polls the file every 10 ms.

A reply that comes after the web gave up expires (Redis) or is removed by the periodic
clean-up (files); the task itself also expires, so a worker that was busy skips requests
nobody waits for any more. No torch here: the web process imports this module.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

from django.conf import settings

REPLY_TTL_S = 120
_PREFIX = "lifecycle:serve:"
_redis_client: Any = None


def new_key() -> str:
    return secrets.token_hex(16)


def _redis() -> Any:
    global _redis_client
    if _redis_client is None:
        import redis

        # redis-py's default 5 s socket timeout would cut a blocking wait short.
        _redis_client = redis.Redis.from_url(
            str(settings.REDIS_URL), socket_timeout=None, socket_connect_timeout=3
        )
    return _redis_client


def _folder() -> Path:
    folder = Path(settings.VAR_DIR) / "serve-replies"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def send(key: str, payload: dict[str, Any]) -> None:
    data = json.dumps(payload)
    if settings.REDIS_URL:
        pipe = _redis().pipeline()
        pipe.lpush(_PREFIX + key, data)
        pipe.expire(_PREFIX + key, REPLY_TTL_S)
        pipe.execute()
        return
    folder = _folder()
    tmp = folder / f".{key}.tmp"
    tmp.write_text(data)
    os.replace(tmp, folder / f"{key}.json")


def wait(key: str, timeout: float) -> dict[str, Any] | None:
    """The reply for `key`, or None when none came within `timeout` seconds."""
    if settings.REDIS_URL:
        got = _redis().blpop([_PREFIX + key], timeout=max(1, int(timeout + 0.999)))
        return json.loads(got[1]) if got else None
    path = _folder() / f"{key}.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file():
            data = json.loads(path.read_text())
            path.unlink(missing_ok=True)
            return dict(data)
        time.sleep(0.01)
    return None


def cleanup(older_than_s: float = REPLY_TTL_S) -> int:
    """Remove reply files nobody collected (filesystem mode)."""
    if settings.REDIS_URL:
        return 0
    cutoff = time.time() - older_than_s
    removed = 0
    for path in _folder().glob("*.json"):
        if path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)
            removed += 1
    return removed
