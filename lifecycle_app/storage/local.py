"""The local-folder store: today's layout under the var folder (the embedded default).

A key is a path relative to the root, so existing files keep their place. Writes go to a
temporary sibling and are renamed into place (`os.replace` for files, a rename of the
whole folder for folders), so a reader sees the old or the new, never half of one.
Reads need no cache: `fetch` returns the file where it lies.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO

from lifecycle_app.storage.base import (
    MANIFEST,
    Manifest,
    Store,
    StoreError,
    StoreMissing,
    check_key,
)
from workers.ml.training.common import atomic_dir


class LocalStore(Store):
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.url = str(self.root)

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _error(self, exc: OSError, what: str) -> StoreError:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return StoreError(f"The artifact store at {self.url} is full: {what} was not saved.")
        return StoreError(f"The artifact store at {self.url} refused {what}: {exc.strerror}.")

    def put_file(self, local: Path, key: str) -> None:
        target = self.path(key)
        if target.exists() and os.path.samefile(local, target):
            return  # written in place (the embedded default)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}-", dir=target.parent)
            os.close(fd)
            try:
                shutil.copyfile(local, tmp)
                os.chmod(tmp, 0o644)
                os.replace(tmp, target)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        except OSError as exc:
            raise self._error(exc, f"the file {key}") from exc

    def put_dir(self, local: Path, key: str) -> Manifest:
        target = self.path(key)
        manifest = Manifest.of_folder(local)
        try:
            if target.exists() and os.path.samefile(local, target):
                _write_atomic(target / MANIFEST, manifest.to_bytes())
                return manifest
            with atomic_dir(target) as tmp:  # the training runs' own folder swap
                shutil.copytree(local, tmp, dirs_exist_ok=True)
                (tmp / MANIFEST).write_bytes(manifest.to_bytes())
                tmp.chmod(0o755)  # copytree gave it the source folder's mode
        except OSError as exc:
            raise self._error(exc, f"the folder {key}") from exc
        return manifest

    def fetch(self, key: str) -> Path:
        path = self.path(key)
        if not path.is_file():
            raise StoreMissing(f"The artifact store at {self.url} has no file {key}.")
        return path

    def fetch_dir(self, key: str) -> Path:
        # Folders written before the store existed have no manifest: a folder is enough.
        path = self.path(key)
        if not path.is_dir():
            raise StoreMissing(f"The artifact store at {self.url} has no folder {key}.")
        return path

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def delete(self, key: str) -> None:
        path = self.path(key)
        if path.is_dir():
            (path / MANIFEST).unlink(missing_ok=True)
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)

    def list(self, prefix: str) -> list[str]:
        base = self.root / prefix.strip("/") if prefix.strip("/") else self.root
        if base.is_file():
            return [base.relative_to(self.root).as_posix()]
        if not base.is_dir():
            return []
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in base.rglob("*")
            if p.is_file()
            and not any(
                part.startswith(".") and part != MANIFEST for part in p.relative_to(self.root).parts
            )
        )

    def size(self, key: str) -> int:
        path = self.path(key)
        if path.is_dir():
            return sum(
                p.stat().st_size for p in path.rglob("*") if p.is_file() and p.name != MANIFEST
            )
        try:
            return path.stat().st_size
        except FileNotFoundError as exc:
            raise StoreMissing(f"The artifact store at {self.url} has no file {key}.") from exc

    def open(self, key: str) -> BinaryIO:
        return self.fetch(key).open("rb")


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
