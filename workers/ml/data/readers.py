"""Reading uploaded dataset files: format recognition and streaming row readers.

Holds the file-reading layer of `validation`: rejecting binary and compressed uploads by
their leading bytes, telling JSON Lines, JSON, CSV and TSV apart, reading the records one
at a time as `Row`s that name their physical line, and turning text that is not UTF-8
into a `DatasetRejected` that points at the first bad byte. The types these share are in
`records`; the JSON array reader is in `json_array`; checking, cleaning and splitting are
in `rows` and `validation`.

Design note. Every reader streams: JSON Lines and CSV/TSV are read a line at a time, and a
JSON array is cut into its elements by `json.JSONDecoder.raw_decode` over a sliding
buffer, so memory does not grow with the number of rows. A single line or record is held
whole, up to a cap derived from `max_cell_chars`; a JSON record over that cap is skipped
by a bracket scanner.

The web process imports this module (through `validation`), so it must not import Django,
torch or transformers.
"""

from __future__ import annotations

import codecs
import csv
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from workers.ml.data.json_array import _CHUNK, _DECODER, _JsonArray, too_long_message
from workers.ml.data.records import DatasetRejected, Problem, Row, _describe
from workers.ml.data.sniff import (
    looks_binary,
    separator_guess,
    sniff_delimiter,
    unicode_without_bom,
)
from workers.ml.data.strict_json import JsonRefused
from workers.ml.data.strict_json import loads as strict_loads

FORMATS = ("jsonl", "json", "csv", "tsv")
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
    if unicode := unicode_without_bom(head):
        raise DatasetRejected(
            f"This looks like {unicode} without a byte-order mark, not {expected}: save it as "
            "UTF-8 and upload it again (only UTF-8 is accepted)."
        )
    if looks_binary(head):
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
    if by_extension == "tsv":
        return "tsv"
    delimiter, agree = sniff_delimiter(text)
    if by_extension == "csv":
        return "tsv" if delimiter == "\t" else "csv"  # one column: `inspect` says so
    if delimiter is not None and agree == 1.0:  # no extension to go by: a regular table
        return "tsv" if delimiter == "\t" else "csv"
    raise DatasetRejected(
        f"Could not tell what format {filename!r} is: it is not JSON Lines, a JSON array, "
        "CSV (a header row, then cells separated by commas, semicolons or '|') or TSV "
        "(tab-separated with a header row)."
    )


def csv_delimiter(path: Path) -> str:
    """The delimiter of a CSV file, sniffed from its first rows (a comma when unclear)."""
    with path.open(encoding="utf-8-sig", newline="") as f:
        delimiter, _ = sniff_delimiter(f.read(_CHUNK))
    return delimiter or ","


def one_column_message(header: list[str]) -> str:
    guess = separator_guess(header[0])
    hint = f" The header seems to use {guess} between columns." if guess else ""
    return (
        f"Only one column was found: the header is {header[0][:80]!r}.{hint} A dataset needs "
        "an input and a target column, separated by commas, semicolons, tabs or '|': save "
        "the file with one of those between columns."
    )


def _looks_like_jsonl(text: str) -> bool:
    lines = [line for line in text.splitlines() if line.strip()]
    try:
        return len(lines) > 1 and isinstance(strict_loads(lines[0]), dict)
    except JsonRefused:
        return len(lines) > 1  # an object with a repeated key: the JSON Lines reader says so
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
                yield None, _jsonl_rows(f, cap, max_cell_chars)
            elif fmt == "json":
                yield None, _JsonArray(f, cap, max_cell_chars, path).rows()
            else:
                delimiter = "\t" if fmt == "tsv" else csv_delimiter(path)
                header, rows = _csv_rows(f, delimiter, max_cell_chars)
                yield header, rows
    finally:
        csv.field_size_limit(old_limit)


def _limited(rows: Iterator[Row], max_rows: int) -> Iterator[Row]:
    for count, row in enumerate(rows, 1):
        if count > max_rows:
            message = f"The file has more than {max_rows:,} rows; the limit is {max_rows:,}."
            raise DatasetRejected(message, [Problem(row.line, "too_many_rows", message)])
        yield row


def _jsonl_rows(f: TextIO, cap: int, max_cell_chars: int) -> Iterator[Row]:
    line = 0
    while text := f.readline(cap):
        line += 1
        if len(text) >= cap and not text.endswith(("\n", "\r")):
            while (rest := f.readline(cap)) and not rest.endswith(("\n", "\r")):
                pass
            message = too_long_message(line, "line", cap, max_cell_chars)
            yield Row(line, None, Problem(line, "too_long", message))
            continue
        if text.isspace():
            continue
        try:
            value = _DECODER.decode(text)  # accepts the surrounding whitespace
        except JsonRefused as exc:
            message = f"Line {line}: {exc}."
            yield Row(line, None, Problem(line, "malformed", message))
            continue
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
    except JsonRefused as exc:
        return str(exc)
    return "the JSON is not valid"


def _explain(exc: json.JSONDecodeError, text: str) -> str:
    if exc.msg.startswith("Unterminated string"):
        return "the JSON is cut off (unterminated string)"
    if exc.msg.startswith("Invalid control character"):
        char = text[exc.pos] if exc.pos < len(text) else ""
        what = "NUL" if char == "\x00" else f"U+{ord(char):04X}" if char else "a control character"
        return (
            f"a control character ({what}) inside a string at column {exc.colno}; write it "
            "as an escape (\\n, \\t) or remove it"
        )
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
                    if end > start:  # the cell ran on over line ends: most likely a quote
                        message += (
                            f' It runs on to line {end}: a quote (") that opens a cell on '
                            f"line {start} is probably never closed."
                        )
                    yield Row(start, None, Problem(start, "too_long", message))
                else:
                    message = f"Line {start}: the row cannot be read ({error})."
                    yield Row(start, None, Problem(start, "malformed", message))
            elif not any(c.strip() for c in cells):
                continue  # blank lines and rows of empty cells are not records
            elif end > start and (quote := _unclosed_quote(start, end, cells, len(header))):
                yield Row(start, None, Problem(start, "malformed", quote))
            elif len(cells) != len(header):
                noun = "cell" if len(cells) == 1 else "cells"
                message = (
                    f"Line {start}: {len(cells)} {noun}, but the header has {len(header)} columns."
                )
                yield Row(start, None, Problem(start, "ragged", message))
            else:
                yield Row(start, dict(zip(header, cells, strict=True)))

    return header, rows()


def _unclosed_quote(start: int, end: int, cells: list[str], columns: int) -> str:
    """Explain a row read across lines `start`..`end` because a quote was left open.

    A quoted cell may hold line breaks, so a row over several lines is fine when it has the
    header's cells and its multi-line cell does not run to the end of the file (an open
    quote swallows the final line break). Otherwise a '"' opened a cell and was not closed
    where the cell should end. Returns "" when the row looks fine.
    """
    spanning = next((i for i, c in enumerate(cells) if "\n" in c or "\r" in c), None)
    if spanning is None:
        return ""
    runs_to_end = cells[-1].endswith(("\n", "\r"))
    if len(cells) == columns and not runs_to_end:
        return ""
    opened = start + sum(c.count("\n") for c in cells[:spanning])
    if runs_to_end:
        return (
            f'Line {opened}: a quote (") opens a cell here and is never closed, so everything '
            f"from line {opened} to the end of the file (line {end}) was read as one cell. "
            'Close the quote, or write a quote inside a cell as two quotes ("").'
        )
    noun = "cell" if len(cells) == 1 else "cells"
    return (
        f'Line {opened}: a quote (") opens a cell here and is not closed until line {end}, '
        f"so lines {start}–{end} were read as one row of {len(cells)} {noun}, but the header "
        f'has {columns} columns. Close the quote, or write a quote inside a cell as "".'
    )


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
