"""Reading uploaded dataset files: format recognition and streaming row readers.

Holds the file-reading layer of `dataset_io` and the types the two share (`Problem`,
`DatasetRejected`, `Row`): rejecting binary and compressed uploads by their leading bytes,
telling JSON Lines, JSON, CSV and TSV apart, reading the records one at a time as `Row`s
that name their physical line, and turning text that is not UTF-8 into a `DatasetRejected`
that points at the first bad byte. Checking, cleaning and splitting are in `dataset_io`.

Design note. Every reader streams: JSON Lines and CSV/TSV are read a line at a time, and a
JSON array is cut into its elements by `json.JSONDecoder.raw_decode` over a sliding
buffer, so memory does not grow with the number of rows. A single line or record is held
whole, up to a cap derived from `max_cell_chars`; a JSON record over that cap is skipped
by a bracket scanner.

The web process imports this module (through `dataset_io`), so it must not import Django,
torch or transformers.
"""

from __future__ import annotations

import codecs
import csv
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from workers.ml.errors import UserFacingError

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


@dataclass(slots=True)
class Row:
    """One record as read, or the reason it could not be read."""

    line: int
    data: dict[str, Any] | None  # None when the row could not be read
    problem: Problem | None = None


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


# --- Readers ----------------------------------------------------------------------------


@contextmanager
def _reading(
    path: Path, fmt: str, max_cell_chars: int
) -> Iterator[tuple[list[str] | None, Iterator[Row]]]:
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


def _limited(rows: Iterator[Row], max_rows: int) -> Iterator[Row]:
    for count, row in enumerate(rows, 1):
        if count > max_rows:
            message = f"The file has more than {max_rows:,} rows; the limit is {max_rows:,}."
            raise DatasetRejected(message, [Problem(row.line, "too_many_rows", message)])
        yield row


def _jsonl_rows(f: TextIO, cap: int) -> Iterator[Row]:
    line = 0
    while text := f.readline(cap):
        line += 1
        if len(text) >= cap and not text.endswith(("\n", "\r")):
            while (rest := f.readline(cap)) and not rest.endswith(("\n", "\r")):
                pass
            message = f"Line {line}: the line is over {cap:,} characters long."
            yield Row(line, None, Problem(line, "too_long", message))
            continue
        if text.isspace():
            continue
        try:
            value = _DECODER.decode(text)  # accepts the surrounding whitespace
        except json.JSONDecodeError:
            message = f"Line {line}: {_explain_line(text.rstrip())}."
            yield Row(line, None, Problem(line, "malformed", message))
            continue
        if isinstance(value, dict):
            yield Row(line, value)
        else:
            message = f"Line {line}: expected a JSON object ({{...}}), found {_describe(value)}."
            yield Row(line, None, Problem(line, "malformed", message))


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


def _csv_rows(f: TextIO, delimiter: str, max_cell_chars: int) -> tuple[list[str], Iterator[Row]]:
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

    def rows() -> Iterator[Row]:
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
                    yield Row(start, None, Problem(start, "too_long", message))
                else:
                    message = f"Line {start}: the row cannot be read ({error})."
                    yield Row(start, None, Problem(start, "malformed", message))
            elif not any(c.strip() for c in cells):
                continue  # blank lines and rows of empty cells are not records
            elif len(cells) != len(header):
                noun = "cell" if len(cells) == 1 else "cells"
                message = (
                    f"Line {start}: {len(cells)} {noun}, but the header has {len(header)} columns."
                )
                yield Row(start, None, Problem(start, "ragged", message))
            else:
                yield Row(start, dict(zip(header, cells, strict=True)))

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

    def rows(self) -> Iterator[Row]:
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

    def _element(self, line: int) -> Row:
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
                return Row(line, value)
            message = f"Line {line}: expected a JSON object ({{...}}), found {_describe(value)}."
            return Row(line, None, Problem(line, "malformed", message))

    def _skip_oversized(self, line: int) -> Row:
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
        return Row(line, None, Problem(line, "too_long", message))

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


# --- Shared helpers ---------------------------------------------------------------------


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
