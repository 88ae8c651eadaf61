"""Artifact storage: every file a job reads or writes, behind one small interface.

`store()` is the configured store: the local folder (LIFECYCLE_STORAGE_URL unset: the var
folder, today's layout, the embedded default) or S3 (`s3://bucket/prefix`, with
AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION).

What rows hold: on an S3 store, storage keys (a relative path: jobs/<id>/attempt-<n>/...,
datasets/<project>/<name>); on the local store, the absolute path of the file as before
(`publish_*` returns it), so a single machine behaves exactly as it always did.

Compatibility rule: a row value that is an absolute path (anything written on the local
store or before the store existed, or a model folder someone registered by path) is read
from the local disk as it is; only relative values are keys. No data migration is needed.
Moving an installation from the local store to S3 means copying var/ into the bucket and
rewriting the absolute paths as keys (not automated).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from django.conf import settings

from lifecycle_app.storage.base import Manifest, Store, StoreError, StoreMissing
from lifecycle_app.storage.cache import ContentCache
from lifecycle_app.storage.local import LocalStore

__all__ = [
    "Manifest",
    "Store",
    "StoreError",
    "StoreMissing",
    "is_remote",
    "key_for",
    "local_dir",
    "local_file",
    "publish_dir",
    "publish_file",
    "store",
]


@functools.cache
def _build(
    url: str,
    var_dir: str,
    cache_dir: str,
    cache_max: int,
    timeout: float,
    endpoint: str | None,
    region: str | None,
) -> Store:
    if not url:
        return LocalStore(Path(var_dir))
    if url.startswith("s3://"):
        from lifecycle_app.storage.s3 import S3Store

        return S3Store(
            url,
            ContentCache(Path(cache_dir), cache_max),
            endpoint_url=endpoint,
            region_name=region,
            timeout_s=timeout,
        )
    if url.startswith("file://") or url.startswith("/"):
        return LocalStore(Path(url.removeprefix("file://")))
    raise StoreError(f"LIFECYCLE_STORAGE_URL={url!r} is neither s3://bucket/prefix nor a folder.")


def store() -> Store:
    """The configured store (one per process and configuration)."""
    return _build(
        settings.STORAGE_URL,
        str(settings.VAR_DIR),
        str(settings.CACHE_DIR),
        settings.CACHE_MAX_BYTES,
        float(settings.STORAGE_TIMEOUT_S),
        os.environ.get("AWS_ENDPOINT_URL") or None,
        os.environ.get("AWS_DEFAULT_REGION") or None,
    )


def is_remote() -> bool:
    return not isinstance(store(), LocalStore)


def key_for(path: Path) -> str:
    """The key of a file or folder under the var folder (its relative path)."""
    return Path(path).resolve().relative_to(Path(settings.VAR_DIR).resolve()).as_posix()


def publish_file(path: Path) -> str:
    """Publish a file written under the var folder; returns what a row holds for it."""
    if not is_remote():
        return str(Path(path).resolve())  # already in place
    key = key_for(path)
    store().put_file(path, key)
    return key


def publish_dir(path: Path) -> str:
    """Publish a folder written under the var folder; returns what a row holds for it."""
    if not is_remote():
        return str(Path(path).resolve())  # already in place (renamed there atomically)
    key = key_for(path)
    store().put_dir(path, key)
    return key


def local_file(ref: str) -> Path:
    """A local path to a file row value: an absolute path as it is, a key fetched."""
    return Path(ref) if os.path.isabs(ref) else store().fetch(ref)


def local_dir(ref: str) -> Path:
    """A local path to a folder row value: an absolute path as it is, a key fetched."""
    return Path(ref) if os.path.isabs(ref) else store().fetch_dir(ref)
