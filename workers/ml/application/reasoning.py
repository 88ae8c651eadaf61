"""Reasoning aids: the instruction each adds to the prompt and how the answer is read."""

from __future__ import annotations

import re

ANSWER_MARKER = "Answer:"

STEP_BY_STEP = (
    "Think step by step. Write your reasoning, then the final answer on its own line "
    f"starting with '{ANSWER_MARKER}'."
)
CALCULATOR = (
    "For any arithmetic, write CALC(expression) using only numbers and + - * / ** ( ), "
    "for example CALC(12*(3+4)); the result is written after it."
)
CITE = "Cite the context passages you use by their number in brackets, like [1]."

_MARKER = re.compile(r"(?im)^\W*(?:final\s+)?answer\s*:\s*")


def instructions(reasoning: str, cite: bool, with_context: bool) -> str:
    parts = []
    if cite and with_context:
        parts.append(CITE)
    if reasoning == "step_by_step":
        parts.append(STEP_BY_STEP)
    elif reasoning == "calculator":
        parts.append(CALCULATOR)
    return " ".join(parts)


def extract_answer(text: str) -> str:
    """The answer after the last "Answer:" marker; without one, the last non-empty line."""
    matches = list(_MARKER.finditer(text))
    if matches:
        return text[matches[-1].end() :].strip()
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""
