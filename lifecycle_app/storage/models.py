"""Model folders that live in the store: fetched through the cache, and adapters pointed
at this host's copy of their base model.

An adapter folder (LoRA, prompt tuning) names its base model by the absolute path it had
on the host that trained it (`base_model_name_or_path`). On another host that path does
not exist, so the adapter is served from a small per-host view of the cached folder: the
same files (symlinks into the cache entry) with adapter_config.json naming where the
parent model is on this host. The cache entry itself is never changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from lifecycle_app.storage import local_dir
from workers.ml.loading import ModelSpec, adapter_base, resolve


def _rebased(folder: Path, base: str, views: Path) -> Path:
    name = hashlib.sha256(f"{folder.resolve()}\0{base}".encode()).hexdigest()
    target = views / name
    if target.is_dir():
        return target
    views.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".view-", dir=views))
    try:
        for path in folder.rglob("*"):
            rel = path.relative_to(folder)
            if path.is_dir():
                (tmp / rel).mkdir(parents=True, exist_ok=True)
            elif rel.as_posix() != "adapter_config.json":
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                os.symlink(path.resolve(), tmp / rel)
        config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
        config["base_model_name_or_path"] = base
        (tmp / "adapter_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
        tmp.chmod(0o755)
        try:
            os.rename(tmp, target)
        except OSError:  # another process made the same view first
            if not target.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def loadable_spec(model: Any, models_dir: Path, views: Path) -> ModelSpec:
    """A spec this host can load for catalog model `model` (source, location, parent): a
    store key is fetched, an adapter is pointed at this host's copy of its parent."""
    spec = ModelSpec(source=model.source, location=model.location)
    if model.source != "local" or os.path.isabs(model.location):
        return spec  # built or found on this host; an absolute path is read as it is
    folder = local_dir(model.location)
    base = adapter_base(folder)
    if base and model.parent is not None:
        # Always this host's copy of the parent, even where the trainer's path happens to
        # exist too (another host's folder on a shared disk, or several "hosts" on one
        # machine): it is the copy this host prepared and keeps.
        parent = resolve(loadable_spec(model.parent, models_dir, views), models_dir)
        if os.path.realpath(base) != os.path.realpath(parent):
            folder = _rebased(folder, parent, views)
    return ModelSpec(source="local", location=str(folder))
