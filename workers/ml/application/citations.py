"""Citations: [n] markers in an answer, mapped to the numbered context chunks."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

_MARK = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")


def cited_numbers(text: str) -> list[int]:
    """The distinct numbers cited as [n] or [n, m], in order of first appearance."""
    seen: list[int] = []
    for match in _MARK.finditer(text):
        for part in match.group(1).split(","):
            n = int(part)
            if n not in seen:
                seen.append(n)
    return seen


def citations(text: str, chunks: Sequence[Any]) -> list[dict[str, Any]]:
    """Each [n] that names a chunk of the context (1-based), as {chunk_id, document_name,
    position, number}; numbers outside the context are ignored."""
    out = []
    for n in cited_numbers(text):
        if 1 <= n <= len(chunks):
            chunk = chunks[n - 1]
            out.append(
                {
                    "number": n,
                    "chunk_id": chunk.chunk_id,
                    "document_name": chunk.document_name,
                    "position": chunk.position,
                }
            )
    return out
