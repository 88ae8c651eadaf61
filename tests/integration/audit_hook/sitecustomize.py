"""Loaded at start-up by every process of tests/integration/test_three_hosts.py (this folder
is first on its PYTHONPATH): an audit hook (PEP 578) that refuses, and records, any file
operation on another host's var folder. Forked pool children inherit the hook.

LIFECYCLE_AUDIT_DENY: the other hosts' var folders (os.pathsep-separated);
LIFECYCLE_AUDIT_LOG: where each refused operation is written, one line each.
"""

from __future__ import annotations

import os
import sys

_DENY = [
    os.path.abspath(d) for d in os.environ.get("LIFECYCLE_AUDIT_DENY", "").split(os.pathsep) if d
]
_LOG = os.environ.get("LIFECYCLE_AUDIT_LOG", "")
_EVENTS = {
    "open",
    "os.listdir",
    "os.scandir",
    "os.chdir",
    "os.mkdir",
    "os.rename",
    "os.remove",
    "os.rmdir",
    "os.link",
    "os.symlink",
    "os.truncate",
    "shutil.copyfile",
    "shutil.copytree",
    "shutil.rmtree",
}


def _denied(path: object) -> str:
    if isinstance(path, int) or path is None:
        return ""
    try:
        text = os.path.abspath(os.fsdecode(path))  # type: ignore[arg-type]
    except TypeError:
        return ""
    for folder in _DENY:
        if text == folder or text.startswith(folder + os.sep):
            return text
    return ""


def _hook(event: str, args: tuple[object, ...]) -> None:
    if event not in _EVENTS:
        return
    for arg in args[:2]:
        if path := _denied(arg):
            if _LOG:
                with open(_LOG, "a", encoding="utf-8") as fh:
                    fh.write(f"{os.getpid()} {event} {path}\n")
            raise PermissionError(f"{path} is another host's var folder ({event})")


if _DENY:
    sys.addaudithook(_hook)
