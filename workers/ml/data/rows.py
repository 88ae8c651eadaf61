"""The row rules of an uploaded dataset, and the split's arithmetic.

`_checked_rows` streams a file through `readers` and yields each usable row as
(line, input, target, split) or the `Problem` that drops it (split is "" unless the mapping
names a split column, whose values must name a split): missing or empty fields, values that
are not text, chat records without an assistant turn, cells over the length limit and
duplicates. Duplicate detection keeps a 16-byte digest and a line number per row
(`_SeenPairs`). The split assigns rows by drawing from an urn of exact split sizes
(`_check_fractions`, `_draw`). `validation` is the public API over these.

The web process imports this module, so it must not import Django, torch or transformers.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import random
from array import array
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from workers.ml.data.readers import FORMATS, _limited, _reading, _utf8_errors
from workers.ml.data.records import DatasetRejected, Problem, _describe
from workers.ml.data.sniff import control_character, has_control
from workers.ml.data.splits import split_of

CHAT_ROLES = ("system", "user", "assistant")
MAX_LABELS = 1000  # a classification target with more distinct values is not a label


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
    split_field: str = "",
) -> Iterator[tuple[int, str, str, str] | Problem]:
    """Yield (line, input, target, split) for each usable row and a Problem for each dropped
    one. `split` is the row's split from `split_field` ("" when no split column is named)."""
    if fmt not in FORMATS:
        raise ValueError(f"Unknown dataset format {fmt!r}; expected one of {FORMATS}.")
    if codecs.lookup(encoding).name not in ("utf-8", "utf-8-sig"):
        raise ValueError(f"Only UTF-8 datasets are supported, not {encoding!r}.")
    seen = _SeenPairs()
    with _utf8_errors(path), _reading(path, fmt, max_cell_chars) as (header, records):
        if header is not None:
            for name in dict.fromkeys(n for n in (input_field, target_field, split_field) if n):
                if name not in header:
                    raise DatasetRejected(
                        f"The file has no column '{name}'; its columns are: {', '.join(header)}."
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
            split = ""
            if split_field:
                value = row.data.get(split_field)
                split = split_of(value) or ""
                if not split:
                    if isinstance(value, str):
                        shown = f"'{value[:40]}'" if value.strip() else "an empty value"
                    else:
                        shown = _describe(value) if split_field in row.data else "nothing"
                    yield Problem(
                        row.line,
                        "bad_split",
                        f"Line {row.line}: the split column '{split_field}' holds {shown}, not "
                        "train, validation or test (dev and val count as validation).",
                    )
                    continue
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
            yield row.line, text, target, split


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
    if has_control(value):
        return _control_problem(value, f"the {role} '{name}'", line)
    return value.strip() if label else value


def _control_problem(text: str, where: str, line: int) -> Problem:
    found = control_character(text)
    assert found is not None
    position, name = found
    return Problem(
        line,
        "control_character",
        f"Line {line}: {where} holds a control character ({name}) at character {position} "
        "of the cell; only tabs and line breaks are allowed. Remove it and upload again.",
    )


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
        role = message["role"].strip()
        if role.lower() not in CHAT_ROLES:
            return Problem(
                line,
                "unknown_role",
                f"Line {line}: {where} has the role {role[:40]!r}, which is not one of "
                f"{', '.join(CHAT_ROLES)}.",
            )
        if has_control(message["content"]):
            return _control_problem(message["content"], f"the content of {where}", line)
        turns.append((role, message["content"]))
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
