"""What the dataset readers, the row rules and the validation share.

A `Row` is one record as read, naming its physical line; a `Problem` is why one row is
dropped; `DatasetRejected` says the whole file is unusable. `_describe` names a JSON
value's type for messages.

The web process imports this module, so it must not import Django, torch or transformers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from workers.ml.errors import UserFacingError


@dataclass(frozen=True)
class Problem:
    line: int | None  # 1-based physical line; for a JSON array, where the element starts
    kind: str  # malformed | missing_field | empty_field | wrong_type | duplicate | too_long
    #            | encoding | control_character | unknown_role | ragged | too_many_rows
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
