"""Strict JSON for everything people upload or send: refuse what json would keep silently.

Python's json module keeps the last value of a repeated key without a word, and a value
nested a few thousand levels deep makes it raise RecursionError (a crash, not a decode
error). Every entry point that parses JSON from a person (dataset files, pasted rows,
preference-set imports, the generation API) parses through `loads` or `DECODER` here, which
turn both into `JsonRefused` with a message a person can act on.
"""

from __future__ import annotations

import json
from typing import Any

# Deeper than any record a dataset, an import or an API request needs (a chat record is 3
# levels deep); far below the interpreter's recursion limit.
MAX_DEPTH = 64


class JsonRefused(ValueError):
    """Valid JSON syntax that we refuse: the message names the cause (no line: callers add it)."""


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    record = dict(pairs)
    if len(record) == len(pairs):
        return record
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise JsonRefused(
                f'the key "{key[:60]}" appears twice in one object (which value is meant?)'
            )
        seen.add(key)
    raise AssertionError("unreachable: a shorter dict means a repeated key")


def too_deep_message() -> str:
    return f"nested too deeply (more than {MAX_DEPTH} levels of arrays and objects)"


def check_depth(value: Any) -> None:
    """Raise JsonRefused when `value` nests deeper than MAX_DEPTH (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > MAX_DEPTH:
            raise JsonRefused(too_deep_message())
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


def _may_be_too_deep(text: str, start: int = 0, end: int | None = None) -> bool:
    """False when text[start:end] holds too few brackets to nest deeper than MAX_DEPTH.

    The count is an upper bound of the depth (brackets inside strings count too), and
    str.count runs in C: most records skip the walk of `check_depth` this way.
    """
    return text.count("[", start, end) + text.count("{", start, end) > MAX_DEPTH


class StrictDecoder(json.JSONDecoder):
    """json.JSONDecoder that refuses repeated keys and deep nesting (also in raw_decode)."""

    def __init__(self) -> None:
        super().__init__(object_pairs_hook=_no_duplicate_keys)

    def raw_decode(self, s: str, idx: int = 0) -> tuple[Any, int]:
        try:
            value, end = super().raw_decode(s, idx)
        except RecursionError:
            raise JsonRefused(too_deep_message()) from None
        if _may_be_too_deep(s, idx, end):
            check_depth(value)
        return value, end


DECODER = StrictDecoder()


def loads(text: str | bytes) -> Any:
    """json.loads, strict: JSONDecodeError for bad syntax, JsonRefused for repeated keys or
    nesting deeper than MAX_DEPTH."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except RecursionError:
        raise JsonRefused(too_deep_message()) from None
    if _may_be_too_deep(text):
        check_depth(value)
    return value
