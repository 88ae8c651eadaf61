"""Streaming reader for a dataset uploaded as one top-level JSON array.

The array is cut into its elements by `json.JSONDecoder.raw_decode` over a sliding
buffer, so memory does not grow with the number of rows. A single record is held whole,
up to a cap derived from `max_cell_chars`; a record over that cap is skipped by a bracket
scanner. Used by `readers`, which also shares `_DECODER` and `_CHUNK` from here.

The web process imports this module, so it must not import Django, torch or transformers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from workers.ml.data.records import DatasetRejected, Problem, Row, _describe
from workers.ml.data.strict_json import DECODER, JsonRefused
from workers.ml.data.strict_json import loads as strict_loads

_DECODER = DECODER  # repeated keys and deep nesting are refused (JsonRefused)
_WS = re.compile(r"[ \t\r\n]*")
_IN_STRING = re.compile(r'[^"\\]*')
_OUTSIDE = re.compile(r'[^"\[\]{},]*')
_DELIMITER = re.compile(r"[,\]]")
_CHUNK = 1 << 16


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
            except JsonRefused as exc:
                self._skip_element()
                message = f"Line {line}: {exc}."
                return Row(line, None, Problem(line, "malformed", message))
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
        self._skip_element()
        message = too_long_message(line, "record", self.cap, self.max_cell_chars)
        return Row(line, None, Problem(line, "too_long", message))

    def _skip_element(self) -> None:
        """Move past an element, tracking only nesting and strings (no recursion)."""
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

    def _not_an_array(self, first: str) -> DatasetRejected:
        if first != "{":
            return DatasetRejected(
                f"This JSON file is not an array of records: it starts with {first!r}. "
                'A JSON dataset looks like [{"input": "...", "target": "..."}, ...].'
            )
        hint = ""
        if self.path.stat().st_size <= 20_000_000:  # small enough to look inside
            try:
                whole = strict_loads(self.path.read_text(encoding="utf-8-sig"))
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


def too_long_message(line: int, what: str, cap: int, max_cell_chars: int) -> str:
    """Say the limit a person can act on (the cell's), not the internal per-record cap."""
    size = f"{cap / 1e6:.1f} million" if cap >= 1_000_000 else f"{cap:,}"
    return (
        f"Line {line}: this {what} is over {size} characters long, too long to be one record; "
        f"no cell may be longer than {max_cell_chars:,} characters."
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
