"""A worker's local cache of store objects, keyed by content hash (sha256).

Design note. Several processes of one host (a worker's pool children, the serving worker)
share one cache folder, so every step is safe against the others:

- An entry is a folder `entries/<sha256>/` (a file's or a folder manifest's hash). It is
  filled in a private temporary folder and renamed into place: an entry that exists is
  complete. One filler per entry (an exclusive `flock` on `locks/<sha256>`); the others
  wait on the lock and then find the entry there.
- Using an entry touches its folder's mtime; after each fill, the least recently used
  entries are evicted (under one `evict` lock) until the total is at most `max_bytes`. The
  entry just filled is kept even when it alone is larger. Eviction renames an entry away
  before deleting it, so nobody finds half an entry; a process that still has files of an
  evicted entry open keeps reading them (POSIX), one that opens a file later fails and
  refetches (a cache as large as the models a worker uses at once avoids that).
- Content hashes make keys with the same content share one entry, and a changed object
  (republished under the same key) a new one: the cache never serves stale bytes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path


def _tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class ContentCache:
    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.entries = self.root / "entries"
        self.hits = 0
        self.fills = 0

    def entry(self, digest: str, fill: Callable[[Path], None]) -> Path:
        """The entry folder for `digest`, filled by `fill(folder)` when missing."""
        if len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
            raise ValueError(f"Not a sha256: {digest!r}")
        target = self.entries / digest
        if target.is_dir():
            self._touch(target)
            self.hits += 1
            return target
        with _locked(self.root / "locks" / digest):
            if target.is_dir():  # another process filled it while we waited
                self._touch(target)
                self.hits += 1
                return target
            tmp_root = self.root / "tmp"
            tmp_root.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f"{digest[:16]}-", dir=tmp_root))
            try:
                fill(tmp)
                tmp.chmod(0o755)
                self.entries.mkdir(parents=True, exist_ok=True)
                os.rename(tmp, target)
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
            self.fills += 1
        self.evict(keep=digest)
        return target

    def _touch(self, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.utime(path)

    def total_bytes(self) -> int:
        if not self.entries.is_dir():
            return 0
        return sum(_tree_size(p) for p in self.entries.iterdir() if p.is_dir())

    def evict(self, keep: str = "") -> list[str]:
        """Remove least recently used entries until the cache holds at most max_bytes."""
        removed: list[str] = []
        if not self.entries.is_dir():
            return removed
        with _locked(self.root / "locks" / "evict"):
            found = []
            for path in self.entries.iterdir():
                with contextlib.suppress(FileNotFoundError):
                    found.append((path.stat().st_mtime, path.name, _tree_size(path), path))
            total = sum(size for _, _, size, _ in found)
            for _, name, size, path in sorted(found):
                if total <= self.max_bytes:
                    break
                if name == keep:
                    continue
                trash = self.root / "tmp" / f"evicted-{name}-{time.monotonic_ns()}"
                trash.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.rename(path, trash)
                except FileNotFoundError:
                    continue
                shutil.rmtree(trash, ignore_errors=True)
                total -= size
                removed.append(name)
        return removed
