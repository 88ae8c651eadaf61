"""Looking at the bytes and characters of an upload before reading it as records.

Tells text from binary (a text file with a stray NUL is text: the NUL is then reported on
its line), recognises UTF-16 and UTF-32 without a byte-order mark by where their NUL bytes
fall, finds the delimiter of a CSV file, and finds control characters inside a cell.

The web process imports this module, so it must not import Django, torch or transformers.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter

DELIMITERS = (",", ";", "\t", "|")
DELIMITER_NAMES = {",": "commas (,)", ";": "semicolons (;)", "\t": "tabs", "|": "pipes (|)"}

# C0 control characters other than tab, line feed and carriage return.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_CONTROL_NAMES = {"\x00": "NUL", "\x08": "backspace", "\x0b": "vertical tab"}
_CONTROL_NAMES |= {"\x0c": "form feed", "\x1b": "escape"}
has_control = _CONTROL.search  # the quick test per cell; `control_character` says which
_CONTROL_BYTES = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_SAMPLE = 4096  # bytes looked at for the UTF-16/32 pattern


def unicode_without_bom(head: bytes) -> str | None:
    """'UTF-16 (LE)' etc. when NUL bytes fall where UTF-16/32 puts them for mostly-ASCII text."""
    sample = head[:_SAMPLE]
    n = len(sample) - len(sample) % 4
    if n < 8 or b"\x00" not in sample:
        return None
    sample = sample[:n]

    def nul_share(offset: int, step: int) -> float:
        lane = sample[offset::step]
        return lane.count(0) / len(lane)

    for name, step, nul_lanes in (
        ("UTF-32 (LE)", 4, (1, 2, 3)),
        ("UTF-32 (BE)", 4, (0, 1, 2)),
        ("UTF-16 (LE)", 2, (1,)),
        ("UTF-16 (BE)", 2, (0,)),
    ):
        lanes = [nul_share(k, step) for k in range(step)]
        if all((share > 0.7) if k in nul_lanes else (share < 0.1) for k, share in enumerate(lanes)):
            return name
    return None


def looks_binary(head: bytes) -> bool:
    """Whether `head` holds NUL bytes among many control bytes (not one stray NUL in text)."""
    if b"\x00" not in head:
        return False
    controls = len(_CONTROL_BYTES.findall(head))
    return controls > max(8, len(head) // 100)


def control_character(text: str) -> tuple[int, str] | None:
    """(1-based position, name) of the first control character other than tab and line ends."""
    match = _CONTROL.search(text)
    if match is None:
        return None
    char = match.group()
    name = _CONTROL_NAMES.get(char, "a control character")
    return match.start() + 1, f"{name}, U+{ord(char):04X}"


def sniff_delimiter(text: str) -> tuple[str | None, float]:
    """The delimiter among , ; tab | that splits the header and the next rows most evenly.

    Returns (delimiter, share of the next rows with the header's number of cells);
    (None, 0.0) when none splits the header in two or more cells.
    """
    best: tuple[float, int, int] = (0.0, 1, 0)
    found: str | None = None
    for rank, delimiter in enumerate(DELIMITERS):
        try:
            rows = []
            for cells in csv.reader(io.StringIO(text), delimiter=delimiter):
                if any(c.strip() for c in cells):
                    rows.append(cells)
                if len(rows) >= 10:
                    break
        except csv.Error:
            continue
        if not rows or len(rows[0]) < 2:
            continue
        width = len(rows[0])
        body = rows[1:-1] if len(rows) > 2 else rows[1:]  # the last row may be cut off
        agree = sum(len(r) == width for r in body) / len(body) if body else 1.0
        score = (agree, width, -rank)
        if score > best:
            best, found = score, delimiter
    return found, best[0]


def separator_guess(header: str) -> str | None:
    """The punctuation the header repeats most, the likely separator of a one-column file."""
    counts = Counter(c for c in header if not (c.isalnum() or c in "_-'\"."))
    if not counts:
        return None
    char = counts.most_common(1)[0][0]
    return "spaces" if char == " " else repr(char)
