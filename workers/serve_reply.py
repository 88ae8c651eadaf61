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

Streams. A streamed request gets a sequence of events (`EventSink.send`, read by
`events`) instead of one reply, through the same two stores:

- Redis: the worker RPUSHes each event on `lifecycle:serve:stream:<key>` (expiry renewed
  with each push) and the web BLPOPs them in order, one round trip per event, no polling.
- Files: the worker writes `<key>/<n>.json` (n = 0, 1, 2, ...) atomically into
  var/serve-replies; the web reads them in order, polling every 5 ms for the next one.

The web tells the worker to stop (its client went away) by setting a cancel flag
(`cancel`/`cancelled`: a Redis key, or a `<key>/cancel` file) that the worker checks
between tokens.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.conf import settings

REPLY_TTL_S = 120
_PREFIX = "lifecycle:serve:"
_STREAM = "lifecycle:serve:stream:"
_CANCEL = "lifecycle:serve:cancel:"
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
    for folder in _folder().iterdir():
        if folder.is_dir() and folder.stat().st_mtime < cutoff:
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


# --- streams -----------------------------------------------------------------------------


class EventSink:
    """The worker's end of one request's event stream."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.sent = 0
        self._checked = 0.0
        self._cancelled = False

    def send(self, event: dict[str, Any]) -> None:
        data = json.dumps(event)
        if settings.REDIS_URL:
            pipe = _redis().pipeline()
            pipe.rpush(_STREAM + self.key, data)
            pipe.expire(_STREAM + self.key, REPLY_TTL_S)
            pipe.execute()
        else:
            folder = _folder() / self.key
            folder.mkdir(exist_ok=True)
            tmp = folder / f".{self.sent}.tmp"
            tmp.write_text(data)
            os.replace(tmp, folder / f"{self.sent}.json")
        self.sent += 1

    def cancelled(self, every_s: float = 0.1) -> bool:
        """Whether the web asked to stop; asks the store at most every `every_s` seconds."""
        now = time.monotonic()
        if not self._cancelled and now - self._checked >= every_s:
            self._checked = now
            self._cancelled = cancelled(self.key)
        return self._cancelled


def cancel(key: str) -> None:
    """Ask the worker answering `key` to stop (the client went away)."""
    if settings.REDIS_URL:
        _redis().set(_CANCEL + key, b"1", ex=REPLY_TTL_S)
        return
    folder = _folder() / key
    folder.mkdir(exist_ok=True)
    (folder / "cancel").touch()


def cancelled(key: str) -> bool:
    if settings.REDIS_URL:
        return bool(_redis().exists(_CANCEL + key))
    return (_folder() / key / "cancel").exists()


def events(key: str, timeout: float) -> Iterator[dict[str, Any] | None]:
    """The events of stream `key` in order; None (then the end) when the next one did not
    come within `timeout` seconds of the previous one (or of the start)."""
    if settings.REDIS_URL:
        client = _redis()
        while True:
            got = client.blpop([_STREAM + key], timeout=max(1, int(timeout + 0.999)))
            if not got:
                yield None
                return
            yield dict(json.loads(got[1]))
    folder = _folder() / key
    n = 0
    deadline = time.monotonic() + timeout
    try:
        while True:
            path = folder / f"{n}.json"
            if path.is_file():
                data = json.loads(path.read_text())
                path.unlink(missing_ok=True)
                n += 1
                deadline = time.monotonic() + timeout
                yield dict(data)
            elif time.monotonic() >= deadline:
                yield None
                return
            else:
                time.sleep(0.005)
    finally:
        if not (folder / "cancel").exists():
            shutil.rmtree(folder, ignore_errors=True)


def discard(key: str) -> None:
    """Drop what is left of stream `key` (the web stopped reading)."""
    if settings.REDIS_URL:
        _redis().delete(_STREAM + key)
