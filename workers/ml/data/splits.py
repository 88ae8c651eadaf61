"""Splits a dataset comes with: a split column, or one file per split.

Public datasets ship their own train / validation / test files, and published scores are on
their test set; re-splitting at random would make results incomparable with anyone else's.
So an upload may name a split column (its values: train, validation or test; "dev", "val"
and "valid" count as validation), or send one file per split, which `combine_split_files`
writes as one JSON Lines file with a SPLIT_COLUMN. Without either, the split is random
(validation.write_clean).

The web process imports this module, so it must not import Django, torch or transformers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from workers.ml.data.readers import _limited, _reading, _utf8_errors
from workers.ml.data.records import DatasetRejected

SPLIT_COLUMN = "split"  # the column combine_split_files writes
SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "development": "validation",
    "test": "test",
    "testing": "test",
}


def split_of(value: Any) -> str | None:
    """The split a cell names ("train", "validation" or "test"), or None."""
    if not isinstance(value, str):
        return None
    return SPLIT_NAMES.get(value.strip().lower())


def combine_split_files(
    parts: Sequence[tuple[str, Path, str]],
    out_path: Path,
    *,
    max_rows: int,
    max_cell_chars: int = 100_000,
) -> dict[str, int]:
    """Write the records of (split, path, format) files as one JSON Lines file, each record
    with its file's split in SPLIT_COLUMN (replacing a column of that name). Returns the
    records written and the unreadable ones skipped per split ("<split>_skipped"): each part
    was inspected already, and validation of the combined file reports row problems."""
    counts: dict[str, int] = {}
    written = 0
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    try:
        with tmp.open("w", encoding="utf-8", newline="\n") as out:
            for split, path, fmt in parts:
                counts.setdefault(split, 0)
                with _utf8_errors(path), _reading(path, fmt, max_cell_chars) as (_, records):
                    for row in _limited(records, max_rows):
                        if row.data is None:
                            key = f"{split}_skipped"
                            counts[key] = counts.get(key, 0) + 1
                            continue
                        written += 1
                        if written > max_rows:
                            message = f"The files have more than {max_rows:,} rows in all."
                            raise DatasetRejected(message)
                        record = {**row.data, SPLIT_COLUMN: split}
                        out.write(json.dumps(record, ensure_ascii=False) + "\n")
                        counts[split] += 1
        tmp.replace(out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return counts
