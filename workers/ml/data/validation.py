"""Checking, cleaning and splitting uploaded datasets: the public API.

`inspect`, `validate`, `write_clean` and `read_clean`. Reading the file (format
recognition, the streaming readers, UTF-8 errors) is in `readers` and `json_array`, the
row rules they share in `rows`, and `Problem` and `DatasetRejected` in `records`.

Design note. Every pass streams the file through `readers`, so memory does not grow with
the number of rows. Two things do grow, on purpose and compactly: duplicate detection
keeps a 16-byte digest and a line number per row, and the split assigns rows by drawing
from an urn of exact split sizes, which needs only the row counts of a first pass.

The web process imports this module, so it must not import Django, torch or
transformers. Problems the uploader can fix are `DatasetRejected` (the whole file) or a
`Problem` per dropped row, each naming the physical line.
"""

from __future__ import annotations

import codecs
import json
import os
import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workers.ml.data.readers import (
    FORMAT_NAMES,
    _detect_format,
    _limited,
    _reading,
    _reject_binary,
    _utf8_errors,
    csv_delimiter,
    one_column_message,
)
from workers.ml.data.records import DatasetRejected, Problem
from workers.ml.data.rows import (
    _check_fractions,
    _checked_rows,
    _count_label,
    _draw,
    _require_valid_rows,
)
from workers.ml.data.sniff import DELIMITER_NAMES
from workers.ml.data.strict_json import loads as strict_loads

__all__ = [
    "SPLITS",
    "Inspection",
    "ValidationReport",
    "inspect",
    "read_clean",
    "split_sizes",
    "split_warnings",
    "validate",
    "write_clean",
]

SPLITS = ("train", "validation", "test")
MAX_PROBLEMS = 200  # problems kept in a report; the counts cover every row


PREVIEW_ROWS = 10
PREVIEW_CHARS = 300
FIELD_SAMPLE = 1000  # records whose keys make up `Inspection.fields`

INPUT_NAMES = ("input", "prompt", "text", "question", "dialogue", "source", "document")
TARGET_NAMES = ("target", "output", "summary", "label", "answer", "response", "completion")


@dataclass
class Inspection:
    format: str
    encoding: str
    had_bom: bool
    fields: list[str]
    preview: list[dict[str, str]]
    is_chat: bool
    suggested_input: str | None
    suggested_target: str | None
    rows: int = 0  # records in the file, counting ones that validation will drop
    delimiter: str | None = None  # CSV and TSV: the character between cells


_KIND_PHRASES = {
    "duplicate": ("duplicate row", "duplicate rows"),
    "empty_field": ("row with an empty field", "rows with an empty field"),
    "missing_field": ("row missing a field", "rows missing a field"),
    "wrong_type": ("row with a value that is not text", "rows with a value that is not text"),
    "too_long": ("row over the length limit", "rows over the length limit"),
    "malformed": ("malformed line", "malformed lines"),
    "ragged": ("row with the wrong number of cells", "rows with the wrong number of cells"),
    "encoding": ("row with an invalid character", "rows with an invalid character"),
    "control_character": ("row with a control character", "rows with a control character"),
    "unknown_role": ("row with an unknown chat role", "rows with an unknown chat role"),
    "bad_split": ("row with an unknown split", "rows with an unknown split"),
}


@dataclass
class ValidationReport:
    total_rows: int
    valid_rows: int
    dropped: dict[str, int] = field(default_factory=dict)  # kind -> rows dropped for it
    problems: list[Problem] = field(default_factory=list)  # the first MAX_PROBLEMS
    labels: dict[str, int] | None = None  # classification only: label -> valid rows
    splits: dict[str, int] | None = None  # with a split column: split -> valid rows

    def summary(self) -> str:
        dropped = sum(self.dropped.values())
        if not dropped:
            return f"{self.valid_rows:,} valid, none dropped."
        parts = []
        for kind, count in sorted(self.dropped.items(), key=lambda kv: (-kv[1], kv[0])):
            one, many = _KIND_PHRASES.get(kind, (kind, kind))
            parts.append(f"{count:,} {one if count == 1 else many}")
        return f"{self.valid_rows:,} valid, {dropped:,} dropped: {', '.join(parts)}."


# --- Public API -------------------------------------------------------------------------


def inspect(
    path: Path, *, filename: str, max_rows: int, max_cell_chars: int = 100_000
) -> Inspection:
    """Recognise the file's format and read it once, end to end.

    Raises `DatasetRejected` for anything that makes the whole file unusable: empty,
    binary or compressed, not UTF-8, not the structure its format needs, no readable
    record, or more than `max_rows` records. Row-level problems are left to `validate`.
    """
    if path.stat().st_size == 0:
        raise DatasetRejected("The file is empty (0 bytes).")
    with path.open("rb") as raw:
        head = raw.read(8192)
    _reject_binary(head, filename)
    with _utf8_errors(path):
        fmt = _detect_format(path, filename)
        fields: dict[str, None] = {}
        preview: list[dict[str, str]] = []
        is_chat = False
        rows = usable = 0
        problems: list[Problem] = []
        with _reading(path, fmt, max_cell_chars) as (header, records):
            for row in _limited(records, max_rows):
                rows += 1
                if row.data is None:
                    if len(problems) < MAX_PROBLEMS and row.problem:
                        problems.append(row.problem)
                    continue
                usable += 1
                if usable <= FIELD_SAMPLE:
                    fields.update(dict.fromkeys(row.data))
                if usable == 1:
                    is_chat = _looks_like_chat(row.data)
                if len(preview) < PREVIEW_ROWS:
                    preview.append({k: _render(v) for k, v in row.data.items()})
    if header is not None:
        fields = dict.fromkeys(header)
        if len(header) == 1:
            raise DatasetRejected(one_column_message(header))
    if not rows:
        raise DatasetRejected(_no_rows_message(fmt, header))
    if not usable:
        raise DatasetRejected(_no_usable_rows_message(fmt, rows, problems, header), problems)
    names = list(fields)
    return Inspection(
        format=fmt,
        encoding="utf-8",
        had_bom=head.startswith(codecs.BOM_UTF8),
        fields=names,
        preview=preview,
        is_chat=is_chat,
        suggested_input="messages" if is_chat else _suggest(names, INPUT_NAMES),
        suggested_target="messages" if is_chat else _suggest(names, TARGET_NAMES),
        rows=rows,
        delimiter=("\t" if fmt == "tsv" else csv_delimiter(path)) if header is not None else None,
    )


def validate(
    path: Path,
    *,
    fmt: str,
    encoding: str,
    input_field: str,
    target_field: str,
    classification: bool = False,
    max_rows: int,
    max_cell_chars: int = 100_000,
    on_progress: Callable[[int], None] | None = None,
    split_field: str = "",
) -> ValidationReport:
    """Check every row against the mapping; count and describe the rows to be dropped.

    `input_field == target_field` means chat records (see `_chat_pair`). With
    `classification`, numbers and booleans in the target are accepted as labels.
    With `split_field`, each row's split comes from that column (`splits` counts them).
    Raises `DatasetRejected` when no row is usable or the mapping names a missing column.
    `on_progress` gets the number of rows read, every 1,000 rows and at the end.
    """
    report = ValidationReport(
        0,
        0,
        labels={} if classification else None,
        splits=dict.fromkeys(SPLITS, 0) if split_field else None,
    )
    dropped: Counter[str] = Counter()
    rows = _checked_rows(
        path,
        fmt=fmt,
        encoding=encoding,
        input_field=input_field,
        target_field=target_field,
        classification=classification,
        max_rows=max_rows,
        max_cell_chars=max_cell_chars,
        split_field=split_field,
    )
    for item in rows:
        report.total_rows += 1
        if isinstance(item, Problem):
            dropped[item.kind] += 1
            if len(report.problems) < MAX_PROBLEMS:
                report.problems.append(item)
        else:
            report.valid_rows += 1
            if report.labels is not None:
                _count_label(report.labels, item[2])
            if report.splits is not None:
                report.splits[item[3]] += 1
        if on_progress and report.total_rows % 1000 == 0:
            on_progress(report.total_rows)
    report.dropped = dict(dropped)
    if on_progress:
        on_progress(report.total_rows)
    _require_valid_rows(report.total_rows, report.valid_rows, report.problems)
    return report


def write_clean(
    path: Path,
    out_path: Path,
    *,
    fmt: str,
    encoding: str,
    input_field: str,
    target_field: str,
    seed: int,
    fractions: tuple[float, float, float],
    stratify: bool,
    max_rows: int,
    max_cell_chars: int = 100_000,
    split_field: str = "",
) -> dict[str, int]:
    """Write the valid rows as JSON Lines {input, target, split, line}; return split sizes.

    Rows are checked with `validate`'s rules (the target is a label when `stratify`).
    With `split_field`, each row keeps the split its column names (seed and fractions are
    not used). Otherwise the split is a function of the file, `seed` and `fractions` only: each split gets
    exactly its largest-remainder share of the valid rows (per label when `stratify`),
    and rows are drawn into splits as from an urn, which makes every assignment with
    those sizes equally likely while holding nothing but the remaining counts.
    """
    sizes_of = _check_fractions(fractions)

    def rows() -> Iterator[tuple[int, str, str, str] | Problem]:
        return _checked_rows(
            path,
            fmt=fmt,
            encoding=encoding,
            input_field=input_field,
            target_field=target_field,
            classification=stratify,
            max_rows=max_rows,
            max_cell_chars=max_cell_chars,
            split_field=split_field,
        )

    totals: dict[str, int] = {}
    total = 0
    problems: list[Problem] = []
    for item in rows():
        total += 1
        if isinstance(item, Problem):
            if len(problems) < MAX_PROBLEMS:
                problems.append(item)
        else:
            _count_label(totals, item[2] if stratify else "")
    _require_valid_rows(total, sum(totals.values()), problems)

    urns = {
        key: (sizes_of(n), random.Random(f"{seed}:{key}") if stratify else random.Random(seed))
        for key, n in totals.items()
    }
    written = dict.fromkeys(SPLITS, 0)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    try:
        with tmp.open("w", encoding="utf-8", newline="\n") as out:
            for item in rows():
                if isinstance(item, Problem):
                    continue
                line, text, target, given = item
                if split_field:
                    split = given
                else:
                    remaining, rng = urns[target if stratify else ""]
                    split = SPLITS[_draw(remaining, rng)]
                written[split] += 1
                record = {"input": text, "target": target, "split": split, "line": line}
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return written


def read_clean(path: Path, split: str | None = None) -> Iterator[dict[str, Any]]:
    """Yield the records `write_clean` wrote, optionally only those of one split."""
    with path.open(encoding="utf-8") as f:
        for text in f:
            if text.strip():
                record: dict[str, Any] = strict_loads(text)
                if split is None or record["split"] == split:
                    yield record


def split_sizes(
    valid_rows: int, labels: dict[str, int] | None, fractions: tuple[float, float, float]
) -> dict[str, int]:
    """The rows each split gets (as `write_clean` assigns them, per label when stratified)."""
    sizes_of = _check_fractions(fractions)
    counts = [0, 0, 0]
    for n in (labels or {"": valid_rows}).values():
        counts = [a + b for a, b in zip(counts, sizes_of(n), strict=True)]
    return dict(zip(SPLITS, counts, strict=True))


def split_warnings(
    counts: dict[str, int], fractions: tuple[float, float, float], *, saved: bool
) -> list[str]:
    """A sentence for each split with a share of the rows that gets none of them."""
    sizes_of = _check_fractions(fractions)
    total = sum(counts.values())
    warnings = []
    for k, split in enumerate(SPLITS):
        if counts.get(split, 0) or not fractions[k]:
            continue
        needed = next((n for n in range(1, 1_000_001) if sizes_of(n)[k]), None)
        rows = f"{total:,} valid row{'' if total == 1 else 's'}"
        verb = "is" if saved else "would be"
        warnings.append(
            f"The {split} split {verb} empty: {rows} at fractions {fractions[0]:g} / "
            f"{fractions[1]:g} / {fractions[2]:g} give it none. It needs at least "
            f"{needed:,} valid rows at these fractions (or a larger {split} fraction)."
        )
    return warnings


# --- Inspection helpers -----------------------------------------------------------------


def _looks_like_chat(record: dict[str, Any]) -> bool:
    messages = record.get("messages")
    return (
        isinstance(messages, list)
        and bool(messages)
        and all(isinstance(m, dict) and "role" in m for m in messages)
    )


def _suggest(names: list[str], wanted: tuple[str, ...]) -> str | None:
    by_lower = {name.lower(): name for name in reversed(names)}  # the first spelling wins
    return next((by_lower[w] for w in wanted if w in by_lower), None)


def _render(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


def _no_rows_message(fmt: str, header: list[str] | None) -> str:
    if header:
        return f"The file has a header row ({', '.join(header)}) but no data rows."
    if fmt == "json":
        return "The JSON array is empty: there are no records in it."
    return "The file has no records."


def _no_usable_rows_message(
    fmt: str, rows: int, problems: list[Problem], header: list[str] | None
) -> str:
    first = problems[0].message if problems else ""
    if header is not None and all(p.kind == "ragged" for p in problems):
        sep = DELIMITER_NAMES["\t"] if fmt == "tsv" else "commas, semicolons or '|'"
        return (
            f"Every row has a different number of cells than the header ({len(header)} "
            f"columns), so the file cannot be read as {FORMAT_NAMES[fmt]}. Check that cells "
            f"are separated by {sep} and that cells containing separators are quoted. {first}"
        )
    if fmt == "json" and all(p.kind == "malformed" for p in problems):
        return f"The JSON array holds no objects; each record must be an object. {first}"
    return f"None of the {rows:,} rows could be read as {FORMAT_NAMES[fmt]}. {first}"
