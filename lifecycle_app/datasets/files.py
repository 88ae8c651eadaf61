"""A dataset's two files in the artifact store (lifecycle_app/storage).

On the local store the files stay where they always were (DATASETS_DIR/<project id>/); on
a remote store their keys are datasets/<project id>/<stored name>, derived from the row, so
rows need no new column.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from lifecycle_app.datasets.models import Dataset
from lifecycle_app.storage import StoreMissing, is_remote, store


def original_key(dataset: Dataset) -> str:
    return f"datasets/{dataset.project_id}/{dataset.stored_name}"


def clean_key(dataset: Dataset) -> str:
    return f"datasets/{dataset.project_id}/{dataset.clean_path.name}"


def dataset_files_publish(*, project_id: int, original: Path, clean: Path) -> None:
    """Publish both files (the clean copy last: jobs read it). On a remote store the web's
    own copies go once published: nothing may read them from this host's disk."""
    if not is_remote():
        return  # written in place under DATASETS_DIR
    target = store()
    for path in (original, clean):
        target.put_file(path, f"datasets/{project_id}/{path.name}")
    original.unlink(missing_ok=True)
    clean.unlink(missing_ok=True)


def clean_file(dataset: Dataset) -> Path:
    """A local path to the clean JSON Lines copy (through the cache on a remote store)."""
    if is_remote():
        return store().fetch(clean_key(dataset))
    if not dataset.clean_path.is_file():
        raise StoreMissing(f"No file {dataset.clean_path}.")
    return dataset.clean_path


def dataset_file_open(dataset: Dataset, which: str) -> BinaryIO:
    """A streaming read of the original or clean file, straight from the store."""
    if is_remote():
        return store().open(original_key(dataset) if which == "original" else clean_key(dataset))
    path = dataset.original_path if which == "original" else dataset.clean_path
    try:
        return path.open("rb")
    except FileNotFoundError as exc:
        raise StoreMissing(f"No file {path}.") from exc


def dataset_files_delete(dataset: Dataset) -> None:
    if is_remote():
        target = store()
        for key in (original_key(dataset), clean_key(dataset)):
            target.delete(key)
