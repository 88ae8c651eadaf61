"""Messages a person can act on for failures that are not the job's input: a full disk,
a folder the worker may not write to. The exception's own text (with its hidden temporary
folders and library internals) goes to the operator's log, not to the page."""

from __future__ import annotations

import errno
from pathlib import Path

# Texts the libraries write when the disk filled up without an errno to go by: torch's
# zip writer ("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0",
# "PytorchStreamWriter failed writing file"), safetensors' Rust I/O error.
_DISK_FULL_TEXTS = (
    "no space left on device",
    "storagefull",
    "os error 28",
    "inline_container.cc",
    "pytorchstreamwriter failed writing",
    "file write failed",
)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def is_disk_full(exc: BaseException) -> bool:
    for item in _chain(exc):
        if isinstance(item, OSError) and item.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(text in str(item).lower() for text in _DISK_FULL_TEXTS):
            return True
    return False


def permission_error(exc: BaseException) -> PermissionError | None:
    for item in _chain(exc):
        if isinstance(item, PermissionError):
            return item
        if isinstance(item, OSError) and item.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return PermissionError(item.errno, item.strerror, item.filename)
    return None


def _visible_folder(filename: object, storage: Path) -> str:
    """The folder to name: the first non-hidden ancestor of `filename` (temporary folders
    such as `.tmp-step-20` mean nothing to a reader), or the storage folder."""
    if not filename:
        return str(storage)
    path = Path(str(filename))
    parts = [p for p in path.parts]
    for i, part in enumerate(parts):
        if part.startswith(".") and i > 0:
            return str(Path(*parts[:i]))
    return str(path.parent if path.suffix else path)


def describe_failure(exc: BaseException, *, storage: Path) -> tuple[str, str]:
    """(message for the page, detail for the log) of an unexpected exception."""
    detail = f"{type(exc).__name__}: {exc}"
    if is_disk_full(exc):
        return (
            "The worker ran out of disk space while writing this job's files, so the job "
            f"stopped. Free space where the worker keeps its files ({storage}) or give it a "
            "bigger disk, then start the job again. Nothing half-written was kept.",
            detail,
        )
    denied = permission_error(exc)
    if denied is not None:
        folder = _visible_folder(denied.filename, storage)
        return (
            f"The worker is not allowed to write to {folder}, so the job stopped. Ask "
            "whoever runs this installation to give the worker's user write access to "
            f"its storage folder ({storage}), then start the job again.",
            detail,
        )
    return f"Unexpected error: {detail}", detail
