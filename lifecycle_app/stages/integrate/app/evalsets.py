"""Reading an uploaded evaluation set (JSON Lines or CSV): every problem named, nothing
kept on refusal. Pure: bytes in, rows or problems out."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from typing import Any

MAX_BYTES = 2 * 1024 * 1024
MAX_QUESTIONS = 2000
MAX_PROBLEMS = 10
QUESTION_KEYS = ("question", "input", "query")
REFERENCE_KEYS = ("reference", "answer", "target", "output")
DOCUMENT_KEYS = ("document", "document_name", "source")
PASSAGE_KEYS = ("passage", "context", "evidence")


@dataclass
class Parsed:
    rows: list[dict[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _pick(row: dict[str, Any], keys: tuple[str, ...]) -> str:
    for k in keys:
        value = row.get(k)
        if value is not None and str(value).strip():
            return str(value).strip()
    return ""


def _row(raw: dict[str, Any], where: str, out: Parsed) -> None:
    question, reference = _pick(raw, QUESTION_KEYS), _pick(raw, REFERENCE_KEYS)
    missing = [n for n, v in (("question", question), ("reference", reference)) if not v]
    if missing:
        out.problems.append(
            f"{where}: no {' and no '.join(missing)} (fields: {', '.join(sorted(raw)) or 'none'})."
        )
        return
    out.rows.append(
        {
            "question": question,
            "reference": reference,
            "document_name": _pick(raw, DOCUMENT_KEYS)[:255],
            "passage": _pick(raw, PASSAGE_KEYS),
        }
    )


def parse(name: str, data: bytes) -> Parsed:
    out = Parsed()
    if not data.strip():
        out.problems.append("The file is empty.")
        return out
    if len(data) > MAX_BYTES:
        out.problems.append(f"The file is {len(data)} bytes; the limit is {MAX_BYTES}.")
        return out
    if b"\x00" in data[:8192]:
        out.problems.append("This is a binary file, not JSON Lines or CSV text.")
        return out
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        out.problems.append(f"The file is not UTF-8 text (byte {exc.start} cannot be read).")
        return out
    lower = name.lower()
    if lower.endswith(".csv"):
        reader = csv.DictReader(io.StringIO(text))
        fields = [f.strip().lower() for f in reader.fieldnames or []]
        if not any(f in fields for f in QUESTION_KEYS) or not any(
            f in fields for f in REFERENCE_KEYS
        ):
            out.problems.append(
                f"The CSV header ({', '.join(fields) or 'empty'}) needs a question column "
                f"({'/'.join(QUESTION_KEYS)}) and a reference column ({'/'.join(REFERENCE_KEYS)})."
            )
            return out
        for n, raw in enumerate(reader, start=2):
            _row({(k or "").strip().lower(): v for k, v in raw.items()}, f"Line {n}", out)
    elif lower.endswith((".jsonl", ".json", ".ndjson")):
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                out.problems.append(f"Line {n}: not valid JSON ({exc.msg}).")
                continue
            if not isinstance(raw, dict):
                out.problems.append(f"Line {n}: a JSON object is needed, not {type(raw).__name__}.")
                continue
            _row(raw, f"Line {n}", out)
    else:
        out.problems.append("Upload a .jsonl or .csv file.")
        return out
    if not out.rows and not out.problems:
        out.problems.append("The file has no questions.")
    if len(out.rows) > MAX_QUESTIONS:
        out.problems.append(
            f"The file has {len(out.rows)} questions; the limit is {MAX_QUESTIONS}."
        )
    if len(out.problems) > MAX_PROBLEMS:
        extra = len(out.problems) - MAX_PROBLEMS
        out.problems = [*out.problems[:MAX_PROBLEMS], f"... and {extra} more problems."]
    return out
