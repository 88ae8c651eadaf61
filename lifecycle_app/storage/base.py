"""The artifact store's interface, its errors and the folder manifest.

A key is a relative POSIX path ("datasets/3/ab12.csv", "jobs/7/attempt-1/run/final"). A
file key names one object; a folder key names the files under it plus `.manifest.json`,
written last: a folder exists for readers only once its manifest does, so nobody ever
sees half of one (S3 has no rename; the manifest is the commit).

This module and the backends are plain Python (no Django), so benches and the ML side can
use them; `lifecycle_app.storage.store()` builds the configured one from the settings.
"""

from __future__ import annotations

import builtins
import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from workers.ml.errors import UserFacingError

MANIFEST = ".manifest.json"
CHUNK = 1024 * 1024


class StoreError(UserFacingError):
    """The store failed (down, full, slow, refused). Its text names the store and is
    written for a person; nothing was published."""


class StoreMissing(StoreError):
    """The key is not in the store."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_key(key: str) -> str:
    key = key.strip("/")
    parts = key.split("/")
    if not key or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"Not a storage key: {key!r}")
    return key


@dataclass(frozen=True)
class Manifest:
    """The files of a published folder: [{"path", "size", "sha256"}], sorted by path."""

    files: list[dict[str, Any]]

    @classmethod
    def of_folder(cls, folder: Path) -> Manifest:
        files = [
            {
                "path": p.relative_to(folder).as_posix(),
                "size": p.stat().st_size,
                "sha256": sha256_of(p),
            }
            for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != MANIFEST
        ]
        return cls(files)

    def to_bytes(self) -> bytes:
        return json.dumps({"version": 1, "files": self.files}, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        return cls(list(json.loads(data)["files"]))

    @property
    def digest(self) -> str:
        """The content hash of the whole folder (of its manifest)."""
        return hashlib.sha256(self.to_bytes()).hexdigest()

    @property
    def size(self) -> int:
        return sum(int(f["size"]) for f in self.files)


class Store(ABC):
    """Where artifacts live. `url` names it in messages ("s3://bucket/prefix", a folder)."""

    url: str

    @abstractmethod
    def put_file(self, local: Path, key: str) -> None:
        """Publish one file under `key`, atomically (readers see the old or the new)."""

    @abstractmethod
    def put_dir(self, local: Path, key: str) -> Manifest:
        """Publish a folder: its files, then its manifest last."""

    @abstractmethod
    def fetch(self, key: str) -> Path:
        """A local path to the file `key` (through the cache for a remote store)."""

    @abstractmethod
    def fetch_dir(self, key: str) -> Path:
        """A local path to the published folder `key` (through the cache)."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether a file or a published folder is at `key`."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove a file or a folder (manifest first, so readers stop seeing it)."""

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Every object key under `prefix`, sorted."""

    @abstractmethod
    def size(self, key: str) -> int:
        """The size of a file, or the total of a published folder."""

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """A streaming, read-only file object on the file `key` (for downloads)."""

    def published_folders(self, prefix: str) -> builtins.list[str]:
        """The published folders under `prefix` (those whose manifest exists)."""
        tail = "/" + MANIFEST
        return [k[: -len(tail)] for k in self.list(prefix) if k.endswith(tail)]
