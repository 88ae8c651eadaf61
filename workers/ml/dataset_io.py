"""Reading, checking, cleaning and splitting uploaded datasets.

Design note. Every pass streams: JSON Lines and CSV/TSV are read a line at a time, and a
JSON array is cut into its elements by `json.JSONDecoder.raw_decode` over a sliding
buffer, so memory does not grow with the number of rows. Two things do grow, on purpose
and compactly: duplicate detection keeps a 16-byte digest and a line number per row, and
the split assigns rows by drawing from an urn of exact split sizes, which needs only the
row counts of a first pass. A single line or record is held whole, up to a cap derived
from `max_cell_chars`; a JSON record over that cap is skipped by a bracket scanner.

The web process imports this module, so it must not import Django, torch or
transformers. Problems the uploader can fix are `DatasetRejected` (the whole file) or a
`Problem` per dropped row, each naming the physical line.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
import os
import random
import re
from array import array
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from workers.ml.errors import UserFacingError

FORMATS = ("jsonl", "json", "csv", "tsv")
SPLITS = ("train", "validation", "test")
MAX_PROBLEMS = 200  # problems kept in a report; the counts cover every row
MAX_LABELS = 1000  # a classification target with more distinct values is not a label
PREVIEW_ROWS = 10
PREVIEW_CHARS = 300
FIELD_SAMPLE = 1000  # records whose keys make up `Inspection.fields`

INPUT_NAMES = ("input", "prompt", "text", "question", "dialogue", "source", "document")
TARGET_NAMES = ("target", "output", "summary", "label", "answer", "response", "completion")
FORMAT_NAMES = {"jsonl": "JSON Lines", "json": "JSON", "csv": "CSV", "tsv": "TSV"}
EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv"}
EXTENSIONS |= {".tsv": "tsv", ".tab": "tsv"}

# Leading bytes of formats people upload by mistake: (magic, what it is, what to do).
_UNZIP = "unzip it and upload the file inside."
_EXPORT = "export the data as JSON Lines, JSON, CSV or TSV (UTF-8) and upload that."
_MAGIC: tuple[tuple[bytes, str, str], ...] = (
    (b"\x00\x00\xfe\xff", "UTF-32 text", "re-save it as UTF-8 and upload it again."),
    (b"\xff\xfe\x00\x00", "UTF-32 text", "re-save it as UTF-8 and upload it again."),
    (b"\xff\xfe", "UTF-16 text", "re-save it as UTF-8 and upload it again."),
    (b"\xfe\xff", "UTF-16 text", "re-save it as UTF-8 and upload it again."),
    (b"PK\x03\x04", "a ZIP archive", _UNZIP),
    (b"PK\x05\x06", "an empty ZIP archive", _EXPORT),
    (b"\x1f\x8b", "a gzip-compressed file", "decompress it (gunzip) and upload the file inside."),
    (b"7z\xbc\xaf\x27\x1c", "a 7z archive", "extract it and upload the file inside."),
    (b"Rar!\x1a\x07", "a RAR archive", "extract it and upload the file inside."),
    (b"\xfd7zXZ\x00", "an xz-compressed file", "decompress it and upload the file inside."),
    (b"\x28\xb5\x2f\xfd", "a zstd-compressed file", "decompress it and upload the file inside."),
    (b"%PDF-", "a PDF document", _EXPORT),
    (b"\x89PNG\r\n\x1a\n", "a PNG image", _EXPORT),
    (b"\xff\xd8\xff", "a JPEG image", _EXPORT),
    (b"GIF87a", "a GIF image", _EXPORT),
    (b"GIF89a", "a GIF image", _EXPORT),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old-style Office file (.xls/.doc)", _EXPORT),
    (b"SQLite format 3\x00", "an SQLite database", _EXPORT),
    (b"\x7fELF", "a program (ELF executable)", _EXPORT),
)
_BZIP2 = re.compile(rb"BZh[1-9]1AY&SY")

_DECODER = json.JSONDecoder()
_WS = re.compile(r"[ \t\r\n]*")
_IN_STRING = re.compile(r'[^"\\]*')
_OUTSIDE = re.compile(r'[^"\[\]{},]*')
_DELIMITER = re.compile(r"[,\]]")
_CHUNK = 1 << 16


@dataclass(frozen=True)
class Problem:
    line: int | None  # 1-based physical line; for a JSON array, where the element starts
    kind: str  # malformed | missing_field | empty_field | wrong_type | duplicate | too_long
    #            | encoding | ragged | too_many_rows
    message: str


class DatasetRejected(UserFacingError):
    """The whole file is unusable; nothing from it should be stored."""

    def __init__(self, message: str, problems: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.problems = problems or []


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


_KIND_PHRASES = {
    "duplicate": ("duplicate row", "duplicate rows"),
    "empty_field": ("row with an empty field", "rows with an empty field"),
    "missing_field": ("row missing a field", "rows missing a field"),
    "wrong_type": ("row with a value that is not text", "rows with a value that is not text"),
    "too_long": ("row over the length limit", "rows over the length limit"),
    "malformed": ("malformed line", "malformed lines"),
    "ragged": ("row with the wrong number of cells", "rows with the wrong number of cells"),
    "encoding": ("row with an invalid character", "rows with an invalid character"),
}


@dataclass
class ValidationReport:
    total_rows: int
    valid_rows: int
    dropped: dict[str, int] = field(default_factory=dict)  # kind -> rows dropped for it
    problems: list[Problem] = field(default_factory=list)  # the first MAX_PROBLEMS
    labels: dict[str, int] | None = None  # classification only: label -> valid rows

    def summary(self) -> str:
        dropped = sum(self.dropped.values())
        if not dropped:
            return f"{self.valid_rows:,} valid, none dropped."
        parts = []
        for kind, count in sorted(self.dropped.items(), key=lambda kv: (-kv[1], kv[0])):
            one, many = _KIND_PHRASES.get(kind, (kind, kind))
            parts.append(f"{count:,} {one if count == 1 else many}")
        return f"{self.valid_rows:,} valid, {dropped:,} dropped: {', '.join(parts)}."


@dataclass(slots=True)
class _Row:
    line: int
    data: dict[str, Any] | None  # None when the row could not be read
    problem: Problem | None = None


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
) -> ValidationReport:
    """Check every row against the mapping; count and describe the rows to be dropped.

    `input_field == target_field` means chat records (see `_chat_pair`). With
    `classification`, numbers and booleans in the target are accepted as labels.
    Raises `DatasetRejected` when no row is usable or the mapping names a missing column.
    `on_progress` gets the number of rows read, every 1,000 rows and at the end.
    """
    report = ValidationReport(0, 0, labels={} if classification else None)
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
) -> dict[str, int]:
    """Write the valid rows as JSON Lines {input, target, split, line}; return split sizes.

    Rows are checked with `validate`'s rules (the target is a label when `stratify`).
    The split is a function of the file, `seed` and `fractions` only: each split gets
    exactly its largest-remainder share of the valid rows (per label when `stratify`),
    and rows are drawn into splits as from an urn, which makes every assignment with
    those sizes equally likely while holding nothing but the remaining counts.
    """
    sizes_of = _check_fractions(fractions)

    def rows() -> Iterator[tuple[int, str, str] | Problem]:
        return _checked_rows(
            path,
            fmt=fmt,
            encoding=encoding,
            input_field=input_field,
            target_field=target_field,
            classification=stratify,
            max_rows=max_rows,
            max_cell_chars=max_cell_chars,
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
                line, text, target = item
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
                record: dict[str, Any] = json.loads(text)
                if split is None or record["split"] == split:
                    yield record


# --- Row rules --------------------------------------------------------------------------


def _checked_rows(
    path: Path,
    *,
    fmt: str,
    encoding: str,
    input_field: str,
    target_field: str,
    classification: bool,
    max_rows: int,
    max_cell_chars: int,
) -> Iterator[tuple[int, str, str] | Problem]:
    """Yield (line, input, target) for each usable row and a Problem for each dropped one."""
    if fmt not in FORMATS:
        raise ValueError(f"Unknown dataset format {fmt!r}; expected one of {FORMATS}.")
    if codecs.lookup(encoding).name not in ("utf-8", "utf-8-sig"):
        raise ValueError(f"Only UTF-8 datasets are supported, not {encoding!r}.")
    seen = _SeenPairs()
    with _utf8_errors(path), _reading(path, fmt, max_cell_chars) as (header, records):
        if header is not None:
            for name in dict.fromkeys((input_field, target_field)):
                if name not in header:
                    hint = ""
                    if len(header) == 1 and ";" in header[0]:
                        hint = " The header seems to use ';' between columns: save it with commas."
                    raise DatasetRejected(
                        f"The file has no column '{name}'; its columns are: "
                        f"{', '.join(header)}.{hint}"
                    )
        for row in _limited(records, max_rows):
            if row.data is None:
                assert row.problem is not None
                yield row.problem
                continue
            if input_field == target_field:
                pair = _chat_pair(row.data, input_field, row.line, max_cell_chars)
            else:
                pair = _pair(
                    row.data, input_field, target_field, row.line, classification, max_cell_chars
                )
            if isinstance(pair, Problem):
                yield pair
                continue
            text, target = pair
            try:
                earlier = seen.add(_digest(text, target), row.line)
            except UnicodeEncodeError:
                yield Problem(
                    row.line,
                    "encoding",
                    f"Line {row.line}: the text holds an invalid character "
                    "(a lone UTF-16 surrogate escape such as \\ud800).",
                )
                continue
            if earlier:
                yield Problem(
                    row.line,
                    "duplicate",
                    f"Line {row.line}: the same input and target as line {earlier}.",
                )
                continue
            yield row.line, text, target


def _pair(
    record: dict[str, Any],
    input_field: str,
    target_field: str,
    line: int,
    classification: bool,
    max_cell_chars: int,
) -> tuple[str, str] | Problem:
    text = _field_text(record, input_field, "input", line, False, max_cell_chars)
    if isinstance(text, Problem):
        return text
    target = _field_text(record, target_field, "target", line, classification, max_cell_chars)
    return target if isinstance(target, Problem) else (text, target)


def _field_text(
    record: dict[str, Any], name: str, role: str, line: int, label: bool, max_cell_chars: int
) -> str | Problem:
    if name not in record:
        keys = ", ".join(list(record)[:10]) or "nothing"
        return Problem(
            line,
            "missing_field",
            f"Line {line}: there is no '{name}' field (this record has: {keys}).",
        )
    value = record[name]
    if value is None:
        return Problem(line, "empty_field", f"Line {line}: the {role} '{name}' is empty (null).")
    if label and isinstance(value, bool | int | float):
        value = json.dumps(value)
    if not isinstance(value, str):
        return Problem(
            line,
            "wrong_type",
            f"Line {line}: '{name}' holds {_describe(value)}, but the {role} must be text.",
        )
    if not value.strip():
        return Problem(line, "empty_field", f"Line {line}: the {role} '{name}' is empty.")
    if len(value) > max_cell_chars:
        return Problem(
            line,
            "too_long",
            f"Line {line}: the {role} '{name}' is {len(value):,} characters long; "
            f"the limit is {max_cell_chars:,}.",
        )
    return value.strip() if label else value


def _chat_pair(
    record: dict[str, Any], name: str, line: int, max_cell_chars: int
) -> tuple[str, str] | Problem:
    """Input: the turns before the last assistant turn as "role: content" lines.

    Target: the content of that last assistant turn.
    """
    if name not in record:
        return Problem(line, "missing_field", f"Line {line}: there is no '{name}' field.")
    messages = record[name]
    if not isinstance(messages, list):
        return Problem(
            line,
            "wrong_type",
            f"Line {line}: '{name}' holds {_describe(messages)}, but it must be a list of "
            'messages like {"role": "user", "content": "..."}.',
        )
    turns: list[tuple[str, str]] = []
    for i, message in enumerate(messages, 1):
        where = f"message {i} in '{name}'"
        if not isinstance(message, dict):
            return Problem(
                line,
                "wrong_type",
                f"Line {line}: {where} is {_describe(message)}, not an object with "
                "'role' and 'content'.",
            )
        for key in ("role", "content"):
            if key not in message:
                return Problem(line, "missing_field", f"Line {line}: {where} has no '{key}'.")
            if not isinstance(message[key], str):
                return Problem(
                    line,
                    "wrong_type",
                    f"Line {line}: the {key} of {where} is {_describe(message[key])}, not text.",
                )
        if len(message["content"]) > max_cell_chars:
            return Problem(
                line,
                "too_long",
                f"Line {line}: {where} is {len(message['content']):,} characters long; "
                f"the limit is {max_cell_chars:,}.",
            )
        turns.append((message["role"].strip(), message["content"]))
    last = max((i for i, (role, _) in enumerate(turns) if role.lower() == "assistant"), default=-1)
    if last < 0:
        return Problem(
            line,
            "missing_field",
            f"Line {line}: '{name}' has no assistant message to use as the target.",
        )
    if not turns[last][1].strip():
        return Problem(
            line, "empty_field", f"Line {line}: the last assistant message in '{name}' is empty."
        )
    if last == 0:
        return Problem(
            line,
            "empty_field",
            f"Line {line}: '{name}' has no message before the last assistant message, "
            "so the input would be empty.",
        )
    return "\n".join(f"{role}: {content}" for role, content in turns[:last]), turns[last][1]


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"true/false ({json.dumps(value)})"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list ([...])"
    return "an object ({...})"


def _digest(text: str, target: str) -> bytes:
    # The length prefix keeps ("ab", "c") and ("a", "bc") apart.
    return hashlib.blake2b(f"{len(text)}:{text}{target}".encode(), digest_size=16).digest()


class _SeenPairs:
    """A set of 16-byte digests, each with the line it was first seen on.

    Open addressing over a bytearray of digests and an array of lines (line 0 marks a free
    slot), kept at most 2/3 full: 30-60 bytes a row where a Python set of bytes objects
    costs ~150, and no allocation per probe.
    """

    def __init__(self, capacity: int = 1024) -> None:
        self._capacity = capacity
        self._digests = bytearray(16 * capacity)
        self._lines = array("I", [0]) * capacity
        self._used = 0

    def add(self, digest: bytes, line: int) -> int:
        """Remember `digest` at `line` unless it is known; return its earlier line or 0."""
        digests, lines, mask = self._digests, self._lines, self._capacity - 1
        i = int.from_bytes(digest, "little") & mask
        while earlier := lines[i]:
            if digests.startswith(digest, 16 * i):
                return earlier
            i = (i + 1) & mask
        digests[16 * i : 16 * i + 16] = digest
        lines[i] = line
        self._used += 1
        if 3 * self._used > 2 * self._capacity:
            self._grow()
        return 0

    def _grow(self) -> None:
        old_digests, old_lines = self._digests, self._lines
        self.__init__(2 * self._capacity)  # type: ignore[misc]
        for i, line in enumerate(old_lines):
            if line:
                self.add(bytes(old_digests[16 * i : 16 * i + 16]), line)


def _count_label(labels: dict[str, int], label: str) -> None:
    labels[label] = labels.get(label, 0) + 1
    if len(labels) > MAX_LABELS:
        raise DatasetRejected(
            f"The target has more than {MAX_LABELS:,} distinct values, so it cannot be a "
            "classification label: map a column of labels, or choose a generation task."
        )


def _require_valid_rows(total: int, valid: int, problems: list[Problem]) -> None:
    if not total:
        raise DatasetRejected("The file has no rows.")
    if not valid:
        first = f" The first problem: {problems[0].message}" if problems else ""
        raise DatasetRejected(
            f"None of the {total:,} rows can be used with this mapping.{first}", problems
        )


def _check_fractions(fractions: tuple[float, float, float]) -> Callable[[int], list[int]]:
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(
            f"Split fractions must be three numbers >= 0 that sum to 1, not {fractions!r}."
        )

    def sizes(n: int) -> list[int]:
        """Largest-remainder shares of n rows; ties go to the earlier split."""
        exact = [f * n for f in fractions]
        whole = [int(x) for x in exact]
        order = sorted(range(3), key=lambda k: (whole[k] - exact[k], k))
        for k in order[: n - sum(whole)]:
            whole[k] += 1
        return whole

    return sizes


def _draw(remaining: list[int], rng: random.Random) -> int:
    pick = rng.randrange(sum(remaining))
    for k, n in enumerate(remaining):
        if pick < n:
            remaining[k] -= 1
            return k
        pick -= n
    raise AssertionError("unreachable")


# --- Format recognition -----------------------------------------------------------------


def _reject_binary(head: bytes, filename: str) -> None:
    expected = _expected_name(filename)
    for magic, what, advice in _MAGIC:
        if head.startswith(magic):
            if magic == b"PK\x03\x04" and b"xl/" in head:
                what, advice = "an Excel workbook", "save it as “CSV UTF-8” and upload that."
            raise DatasetRejected(f"This is {what}, not {expected}: {advice}")
    if _BZIP2.match(head):
        raise DatasetRejected(
            f"This is a bzip2-compressed file, not {expected}: decompress it and upload the "
            "file inside."
        )
    if b"\x00" in head:
        raise DatasetRejected(
            f"This looks like a binary file (it contains NUL bytes), not {expected}: {_EXPORT}"
        )


def _expected_name(filename: str) -> str:
    fmt = EXTENSIONS.get(Path(filename).suffix.lower())
    return f"a {FORMAT_NAMES[fmt]} file" if fmt else "a text dataset"


def _detect_format(path: Path, filename: str) -> str:
    """The format named by the extension, corrected by the first non-blank characters."""
    ext = Path(filename).suffix.lower()
    with path.open(encoding="utf-8-sig", newline="") as f:
        head = ""
        while not head.strip():  # whitespace-only chunks before the text carry nothing
            head = f.read(_CHUNK)
            if not head:
                raise DatasetRejected("The file holds only whitespace: there are no records.")
        head += f.read(_CHUNK)
    text = head.lstrip()
    first_line = text.splitlines()[0]
    if text.startswith("["):
        return "json"
    if text.startswith("{"):
        if ext == ".json" and not _looks_like_jsonl(text):
            return "json"  # one object: `_JsonArray` rejects it and says why
        return "jsonl"
    if ext == ".json":
        raise DatasetRejected(
            f"This file is not a JSON array of records: it starts with {text[:20]!r}. "
            'A JSON dataset looks like [{"input": "...", "target": "..."}, ...].'
        )
    by_extension = EXTENSIONS.get(ext)
    if by_extension == "jsonl":
        return "jsonl"  # every line will be reported as malformed, with its number
    if by_extension == "csv":
        return "tsv" if "\t" in first_line and "," not in first_line else "csv"
    if by_extension == "tsv":
        return "tsv"
    for fmt, delimiter in (("tsv", "\t"), ("csv", ",")):
        if delimiter in first_line and _consistent_table(text, delimiter):
            return fmt
    raise DatasetRejected(
        f"Could not tell what format {filename!r} is: it is not JSON Lines, a JSON array, "
        "CSV (comma-separated with a header row) or TSV (tab-separated with a header row)."
    )


def _consistent_table(text: str, delimiter: str) -> bool:
    """Whether the header and the first row (if any) split into the same number of cells."""
    try:
        rows = [r for r in csv.reader(text.splitlines()[:50], delimiter=delimiter) if r][:2]
    except csv.Error:
        return False
    return len(rows) == 1 or len(rows[0]) == len(rows[1])


def _looks_like_jsonl(text: str) -> bool:
    lines = [line for line in text.splitlines() if line.strip()]
    try:
        return len(lines) > 1 and isinstance(json.loads(lines[0]), dict)
    except json.JSONDecodeError:
        return False


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
        sep = "tabs" if fmt == "tsv" else "commas"
        return (
            f"Every row has a different number of cells than the header ({len(header)} "
            f"columns), so the file cannot be read as {FORMAT_NAMES[fmt]}. Check that cells "
            f"are separated by {sep} and that cells containing separators are quoted. {first}"
        )
    if fmt == "json" and all(p.kind == "malformed" for p in problems):
        return f"The JSON array holds no objects; each record must be an object. {first}"
    return f"None of the {rows:,} rows could be read as {FORMAT_NAMES[fmt]}. {first}"


# --- Readers ----------------------------------------------------------------------------


@contextmanager
def _reading(
    path: Path, fmt: str, max_cell_chars: int
) -> Iterator[tuple[list[str] | None, Iterator[_Row]]]:
    """Open `path` and yield (CSV/TSV header or None, rows)."""
    # One record is held whole; a JSON record may hold several cells plus its keys.
    cap = 4 * max_cell_chars + (1 << 20)
    # csv's field limit is process-wide: it is set for this read and restored after. Two
    # threads reading at once with different max_cell_chars would see each other's limit.
    old_limit = csv.field_size_limit(max_cell_chars + 1)
    try:
        # utf-8-sig strips a byte order mark; newline="" keeps line ends for csv.
        with path.open(encoding="utf-8-sig", newline="") as f:
            if fmt == "jsonl":
                yield None, _jsonl_rows(f, cap)
            elif fmt == "json":
                yield None, _JsonArray(f, cap, max_cell_chars, path).rows()
            else:
                header, rows = _csv_rows(f, "\t" if fmt == "tsv" else ",", max_cell_chars)
                yield header, rows
    finally:
        csv.field_size_limit(old_limit)


def _limited(rows: Iterator[_Row], max_rows: int) -> Iterator[_Row]:
    for count, row in enumerate(rows, 1):
        if count > max_rows:
            message = f"The file has more than {max_rows:,} rows; the limit is {max_rows:,}."
            raise DatasetRejected(message, [Problem(row.line, "too_many_rows", message)])
        yield row


def _jsonl_rows(f: TextIO, cap: int) -> Iterator[_Row]:
    line = 0
    while text := f.readline(cap):
        line += 1
        if len(text) >= cap and not text.endswith(("\n", "\r")):
            while (rest := f.readline(cap)) and not rest.endswith(("\n", "\r")):
                pass
            message = f"Line {line}: the line is over {cap:,} characters long."
            yield _Row(line, None, Problem(line, "too_long", message))
            continue
        if text.isspace():
            continue
        try:
            value = _DECODER.decode(text)  # accepts the surrounding whitespace
        except json.JSONDecodeError:
            message = f"Line {line}: {_explain_line(text.rstrip())}."
            yield _Row(line, None, Problem(line, "malformed", message))
            continue
        if isinstance(value, dict):
            yield _Row(line, value)
        else:
            message = f"Line {line}: expected a JSON object ({{...}}), found {_describe(value)}."
            yield _Row(line, None, Problem(line, "malformed", message))


def _explain_line(text: str) -> str:
    # Decoded again without the line end, which would read as a control character.
    try:
        _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        return _explain(exc, text)
    return "the JSON is not valid"


def _explain(exc: json.JSONDecodeError, text: str) -> str:
    if exc.msg.startswith("Unterminated string"):
        return "the JSON is cut off (unterminated string)"
    if exc.pos >= len(text.rstrip()):
        return "the JSON is cut off (the record is not closed)"
    if exc.msg == "Extra data":
        return f"there is more than one JSON value on the line (extra text at column {exc.colno})"
    return f"the JSON is not valid: {exc.msg} at column {exc.colno}"


def _csv_rows(f: TextIO, delimiter: str, max_cell_chars: int) -> tuple[list[str], Iterator[_Row]]:
    reader = csv.reader(f, delimiter=delimiter)
    end = 0  # the last physical line the reader has consumed

    def read() -> tuple[int, list[str] | None, str]:
        nonlocal end
        start = end + 1
        try:
            cells = next(reader)
        except csv.Error as exc:
            end = reader.line_num
            return start, None, str(exc)
        end = reader.line_num
        return start, cells, ""

    header: list[str] = []
    while not header:
        try:
            start, cells, error = read()
        except StopIteration:
            return [], iter(())
        if cells is None:
            raise DatasetRejected(f"Line {start}: the header row cannot be read ({error}).")
        if any(c.strip() for c in cells):
            header = [c.strip() or f"column_{i}" for i, c in enumerate(cells, 1)]
    for i, name in enumerate(header):
        if name in header[:i]:
            raise DatasetRejected(
                f"The header names the column '{name}' twice (columns {header.index(name) + 1} "
                f"and {i + 1}); rename one of them."
            )

    def rows() -> Iterator[_Row]:
        while True:
            try:
                start, cells, error = read()
            except StopIteration:
                return
            if cells is None:
                if "field larger than field limit" in error:
                    message = (
                        f"Line {start}: a cell is longer than {max_cell_chars:,} characters "
                        "(the limit)."
                    )
                    yield _Row(start, None, Problem(start, "too_long", message))
                else:
                    message = f"Line {start}: the row cannot be read ({error})."
                    yield _Row(start, None, Problem(start, "malformed", message))
            elif not any(c.strip() for c in cells):
                continue  # blank lines and rows of empty cells are not records
            elif len(cells) != len(header):
                noun = "cell" if len(cells) == 1 else "cells"
                message = (
                    f"Line {start}: {len(cells)} {noun}, but the header has {len(header)} columns."
                )
                yield _Row(start, None, Problem(start, "ragged", message))
            else:
                yield _Row(start, dict(zip(header, cells, strict=True)))

    return header, rows()


class _JsonArray:
    """Yield the elements of a top-level JSON array one at a time.

    `buf[pos:]` is unread text. `line` is the line number at `buf[counted]`; it only moves
    forward, so counting newlines costs O(file) in all.
    """

    def __init__(self, f: TextIO, cap: int, max_cell_chars: int, path: Path) -> None:
        self.f, self.cap, self.max_cell_chars, self.path = f, cap, max_cell_chars, path
        self.buf, self.pos, self.eof = "", 0, False
        self.line, self.counted = 1, 0

    def line_at(self, pos: int) -> int:
        self.line += self.buf.count("\n", self.counted, pos)
        self.counted = pos
        return self.line

    def more(self, size: int = _CHUNK) -> bool:
        """Drop the text before `pos` and read `size` more characters."""
        if self.eof:
            return False
        self.line_at(self.pos)
        self.buf, self.pos, self.counted = self.buf[self.pos :], 0, 0
        data = self.f.read(size)
        self.buf += data
        self.eof = not data
        return bool(data)

    def peek(self) -> str:
        """The next non-whitespace character, or "" at the end of the file."""
        while True:
            self.pos = _end_of(_WS, self.buf, self.pos)
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.more():
                return ""

    def rows(self) -> Iterator[_Row]:
        first = self.peek()
        if first != "[":
            raise self._not_an_array(first)
        self.pos += 1
        c = self.peek()
        while c != "]":  # at the start of an element
            if not c:
                raise _cut_off(self.line_at(self.pos), "before its closing ']'")
            line = self.line_at(self.pos)
            yield self._element(line)
            c = self.peek()
            if c == ",":
                self.pos += 1
                c = self.peek()
                if c == "]":
                    raise _malformed(
                        self.line_at(self.pos), "there is a comma after the last record"
                    )
            elif c and c != "]":
                raise _malformed(
                    self.line_at(self.pos),
                    f"expected ',' or ']' after the record that starts on line {line}, found {c!r}",
                )
        self.pos += 1
        if self.peek():
            raise _malformed(
                self.line_at(self.pos), "there is more text after the ']' that closes the array"
            )

    def _element(self, line: int) -> _Row:
        size = _CHUNK
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                incomplete = exc.msg.startswith("Unterminated") or exc.pos >= len(self.buf) - 8
                if not incomplete or self.eof:
                    at = line + self.buf.count("\n", self.pos, exc.pos)
                    if incomplete:
                        reason = (
                            "unterminated string"
                            if exc.msg.startswith("Unterminated string")
                            else "the record is not closed"
                        )
                        raise _cut_off(at, f"in the middle of a record ({reason})") from None
                    raise _malformed(at, f"the JSON is not valid: {exc.msg}") from None
                if len(self.buf) - self.pos > self.cap:
                    return self._skip_oversized(line)
                self.more(size)
                size *= 2  # re-parsing from the element start stays linear overall
                continue
            if (
                not isinstance(value, dict | list | str)
                and not self.eof
                and _DELIMITER.search(self.buf, end) is None
            ):
                self.more(size)  # a number may go on in the next chunk ("1." then "5")
                continue
            self.pos = end
            if isinstance(value, dict):
                return _Row(line, value)
            message = f"Line {line}: expected a JSON object ({{...}}), found {_describe(value)}."
            return _Row(line, None, Problem(line, "malformed", message))

    def _skip_oversized(self, line: int) -> _Row:
        """Move past an element too long to hold, tracking only nesting and strings."""
        depth, in_string, escaped = 0, False, False
        while True:
            if self.pos >= len(self.buf) and not self.more():
                raise _cut_off(self.line_at(self.pos), "in the middle of a record")
            buf = self.buf
            if escaped:
                escaped = False
                self.pos += 1
                continue
            if in_string:
                self.pos = _end_of(_IN_STRING, buf, self.pos)
                if self.pos < len(buf):  # at a backslash or the closing quote
                    escaped = buf[self.pos] == "\\"
                    in_string = escaped
                    self.pos += 1
                continue
            pos = self.pos = _end_of(_OUTSIDE, buf, self.pos)
            if pos >= len(buf):
                continue
            c = buf[pos]
            if c in "}]," and depth == 0:
                break
            self.pos += 1
            if c == '"':
                in_string = True
            elif c in "[{":
                depth += 1
            elif c in "]}":
                depth -= 1
                if depth == 0:
                    break
        message = (
            f"Line {line}: this record is over {self.cap:,} characters long; no cell may be "
            f"longer than {self.max_cell_chars:,}."
        )
        return _Row(line, None, Problem(line, "too_long", message))

    def _not_an_array(self, first: str) -> DatasetRejected:
        if first != "{":
            return DatasetRejected(
                f"This JSON file is not an array of records: it starts with {first!r}. "
                'A JSON dataset looks like [{"input": "...", "target": "..."}, ...].'
            )
        hint = ""
        if self.path.stat().st_size <= 20_000_000:  # small enough to look inside
            try:
                whole = json.loads(self.path.read_text(encoding="utf-8-sig"))
            except ValueError:
                whole = None
            if isinstance(whole, dict):
                key = next(
                    (
                        k
                        for k, v in whole.items()
                        if isinstance(v, list) and v and isinstance(v[0], dict)
                    ),
                    None,
                )
                if key is not None:
                    hint = f" The records seem to be the list under {key!r}: upload just that list."
        return DatasetRejected(
            "This JSON file holds one object, not an array of records: a JSON dataset looks "
            f'like [{{"input": "...", "target": "..."}}, ...].{hint}'
        )


def _end_of(pattern: re.Pattern[str], text: str, pos: int) -> int:
    match = pattern.match(text, pos)
    return match.end() if match else pos


def _malformed(line: int, what: str) -> DatasetRejected:
    message = f"Line {line}: {what}."
    return DatasetRejected(message, [Problem(line, "malformed", message)])


def _cut_off(line: int, where: str) -> DatasetRejected:
    message = f"Line {line}: the JSON array is cut off {where}."
    return DatasetRejected(message, [Problem(line, "malformed", message)])


# --- Encoding errors --------------------------------------------------------------------


@contextmanager
def _utf8_errors(path: Path) -> Iterator[None]:
    try:
        yield
    except UnicodeDecodeError:
        raise _not_utf8(path) from None


def _not_utf8(path: Path) -> DatasetRejected:
    """Find the first byte that is not UTF-8 and say where it is and what it may be."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = line_start = 0
    line = 1
    with path.open("rb") as f:
        # "\n" never occurs inside a UTF-8 sequence, so reading by lines is exact.
        while chunk := f.readline(_CHUNK):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                pending = len(exc.object) - len(chunk)  # bytes held from the last chunk
                at = offset - pending + exc.start
                bad = exc.object[exc.start]
                try:
                    guess = (
                        f" It looks like Latin-1/Windows-1252 text (that byte is "
                        f"{bytes([bad]).decode('cp1252')!r} there)."
                    )
                except UnicodeDecodeError:
                    guess = ""
                message = (
                    f"Line {line} is not valid UTF-8: byte 0x{bad:02X} at position "
                    f"{at - line_start + 1} of the line (offset {at} in the file).{guess} "
                    "Only UTF-8 is accepted: re-save the file as UTF-8 (in Excel: Save As, "
                    "“CSV UTF-8”) and upload it again."
                )
                return DatasetRejected(message, [Problem(line, "encoding", message)])
            offset += len(chunk)
            if chunk.endswith(b"\n"):
                line += 1
                line_start = offset
    message = (
        f"Line {line}: the file ends in the middle of a UTF-8 character. Re-save the file as "
        "UTF-8 and upload it again."
    )
    return DatasetRejected(message, [Problem(line, "encoding", message)])
