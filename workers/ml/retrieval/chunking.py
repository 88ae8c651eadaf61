"""Splitting a document's text into chunks measured in a model's tokens.

Chunks end on a paragraph boundary where one falls in the second half of the chunk, else
on a sentence boundary; a sentence longer than a chunk is cut into token windows. The next
chunk repeats the last sentences (or windows) of the previous one up to `overlap_tokens`.
Chunks are spans of the original text, so their characters are exactly the document's.

Token counts are those of the tokenizer without special tokens; a packed chunk is counted
again as a whole and shortened by a unit if joining changed its count past the size.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_PARAGRAPH = re.compile(r"\n[ \t]*\n\s*")
# After ., ! or ? (and closing quotes/brackets) followed by space, or at a single line end.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+|\n+")


@dataclass(frozen=True)
class _Unit:
    start: int
    end: int
    tokens: int
    paragraph_start: bool


def _count(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _spans(text: str, pattern: re.Pattern[str], start: int, end: int) -> list[tuple[int, int]]:
    spans, pos = [], start
    for match in pattern.finditer(text, start, end):
        if match.start() > pos:
            spans.append((pos, match.start()))
        pos = match.end()
    if pos < end:
        spans.append((pos, end))
    return [(a, b) for a, b in spans if text[a:b].strip()]


def _windows(tokenizer: Any, text: str, start: int, end: int, piece: int) -> list[_Unit]:
    """A long sentence cut into pieces of `piece` tokens, as character spans."""
    try:
        encoded = tokenizer(text[start:end], add_special_tokens=False, return_offsets_mapping=True)
        offsets = [(start + a, start + b) for a, b in encoded["offset_mapping"]]
    except (NotImplementedError, TypeError, KeyError):  # a slow tokenizer: words instead
        offsets = [
            (start + m.start(), start + m.end()) for m in re.finditer(r"\S+", text[start:end])
        ]
    units = []
    for i in range(0, len(offsets), piece):
        group = offsets[i : i + piece]
        a = start if i == 0 else group[0][0]
        b = end if i + piece >= len(offsets) else offsets[i + piece][0]
        if text[a:b].strip():
            units.append(_Unit(a, b, _count(tokenizer, text[a:b]), False))
    return units


def _units(text: str, tokenizer: Any, size: int, piece: int) -> list[_Unit]:
    units: list[_Unit] = []
    for p_start, p_end in _spans(text, _PARAGRAPH, 0, len(text)):
        first = True
        for s_start, s_end in _spans(text, _SENTENCE_END, p_start, p_end):
            n = _count(tokenizer, text[s_start:s_end])
            if n <= size:
                units.append(_Unit(s_start, s_end, n, first))
            else:
                pieces = _windows(tokenizer, text, s_start, s_end, piece)
                if pieces:
                    pieces[0] = _Unit(pieces[0].start, pieces[0].end, pieces[0].tokens, first)
                units.extend(pieces)
            first = False
    return units


def chunk_document(
    text: str, tokenizer: Any, size_tokens: int, overlap_tokens: int
) -> list[tuple[int, int, str]]:
    """(start char, end char, text) of each chunk of `text`, in order.

    `size_tokens` is the most tokens in a chunk; `overlap_tokens` (< size) the most tokens
    a chunk repeats from the end of the previous one, in whole sentences or windows.
    """
    if size_tokens < 1:
        raise ValueError("size_tokens must be at least 1")
    if not 0 <= overlap_tokens < size_tokens:
        raise ValueError("overlap_tokens must be at least 0 and below size_tokens")
    piece = overlap_tokens if overlap_tokens >= 8 else max(1, size_tokens // 4)
    units = _units(text, tokenizer, size_tokens, piece)
    chunks: list[tuple[int, int, str]] = []
    i = 0
    while i < len(units):
        j, total = i, 0
        while j < len(units) and total + units[j].tokens <= size_tokens:
            total += units[j].tokens
            j += 1
        j = max(j, i + 1)
        if j < len(units):
            # Prefer ending before a paragraph that starts in the second half of the chunk.
            running = 0
            best = None
            for k in range(i, j):
                if k > i and units[k].paragraph_start and running >= size_tokens // 2:
                    best = k
                running += units[k].tokens
            if best is not None:
                j = best
        while (
            j > i + 1 and _count(tokenizer, text[units[i].start : units[j - 1].end]) > size_tokens
        ):
            j -= 1
        start, end = units[i].start, units[j - 1].end
        chunks.append((start, end, text[start:end]))
        if j >= len(units):
            break
        back, k = 0, j
        while k > i + 1 and back + units[k - 1].tokens <= overlap_tokens:
            back += units[k - 1].tokens
            k -= 1
        i = k
    return chunks
