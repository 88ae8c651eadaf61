"""Fuzz every place a person hands us data: dataset uploads and pasted rows, preference-set
imports and the generation API.

A seeded generator builds over 500 malformed inputs from valid ones: truncations, deep
nesting, repeated keys, other encodings (UTF-16/32 with and without a byte-order mark,
Latin-1), control characters, huge cells, other delimiters, unclosed quotes, byte flips.
For each: no 500, a refusal that names a line or a cause, and nothing left behind (no row,
no file) once the person walks away.
"""

from __future__ import annotations

import html
import json
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from lifecycle_app.models import (
    CatalogModel,
    Dataset,
    JobKind,
    JobStatus,
    ModelVariant,
    PreferenceSet,
    Project,
    VariantKind,
)
from lifecycle_app.stages.deploy.services import api_token_create, variant_deploy
from tests.factories import JobFactory
from tests.unit.bad_files import STAGED_MAPPING

SEED = 17
ROWS = [
    {"input": f"A: Is the {word} ready? B: Yes, at {n}.", "target": f"The {word} is ready at {n}."}
    for n, word in enumerate(["report", "car", "lunch", "invoice", "build", "room"], start=1)
]
PAIRS = [{"prompt": r["input"], "chosen": r["target"], "rejected": "No idea."} for r in ROWS]
# A refusal must name where or why; these words name the causes our messages give.
CAUSE = re.compile(
    r"[Ll]ine \d|row \d|nested too deeply|appears twice|UTF-|binary|encoding|empty|"
    r"quote|delimiter|separator|column|limit|too (large|long|big)|field|JSON|CSV|TSV|"
    r"character|missing|same text|byte",
)


def _jsonl(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def _csv(records: list[dict[str, Any]], sep: str = ",") -> str:
    lines = [sep.join(records[0])] + [sep.join(f'"{v}"' for v in r.values()) for r in records]
    return "\n".join(lines) + "\n"


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def _mutations(text: str, rng: random.Random, *, key: str) -> Iterator[tuple[str, bytes]]:
    """Malformed variants of one valid text, named, as bytes."""
    data = text.encode()
    for i in range(20):
        cut = rng.randrange(1, len(data))
        yield f"truncated-{i}", data[:cut]
    for depth in (65, 3_000, 40_000):
        deep = text.replace(f'"{key}": ', f'"{key}": {_deep(depth)}, "x{depth}": ', 1)
        yield f"nested-{depth}", deep.encode()
    yield "repeated-key", text.replace(f'"{key}": ', f'"{key}": "one", "{key}": ', 1).encode()
    for codec in ("utf-16-le", "utf-16-be", "utf-16", "utf-32-le", "utf-32", "latin-1"):
        yield f"encoding-{codec}", (text + "café\n").encode(codec, errors="replace")
    for ch in ("\x00", "\x01", "\x1b", "\x7f"):
        pos = rng.randrange(len(text))
        yield f"control-{ord(ch)}", (text[:pos] + ch + text[pos:]).encode()
    yield "huge-cell", text.replace(f'"{key}": "', f'"{key}": "' + "x" * 300_000, 1).encode()
    for i in range(6):
        flipped = bytearray(data)
        for _ in range(3):
            flipped[rng.randrange(len(flipped))] = rng.randrange(256)
        yield f"flipped-{i}", bytes(flipped)
    yield "empty", b""
    yield "bom-only", b"\xef\xbb\xbf"
    yield "whitespace", b" \n\t\n"


def dataset_inputs() -> list[tuple[str, str, bytes]]:
    rng = random.Random(SEED)
    out = []
    samples = {
        "rows.jsonl": _jsonl(ROWS),
        "rows.json": json.dumps(ROWS, indent=1),
        "compact.json": json.dumps(ROWS),
        "chat.jsonl": _jsonl(
            [
                {
                    "input": r["input"],
                    "messages": [
                        {"role": "user", "content": r["input"]},
                        {"role": "assistant", "content": r["target"]},
                    ],
                }
                for r in ROWS
            ]
        ),
    }
    for filename, text in samples.items():
        out += [(f"{filename}:{n}", filename, b) for n, b in _mutations(text, rng, key="input")]
    csv_text = _csv(ROWS)
    for name, sep in (("semicolon", ";"), ("pipe", "|"), ("tab", "\t")):
        out.append((f"rows.csv:{name}", "rows.csv", _csv(ROWS, sep).encode()))
    out.append(
        (
            "rows.csv:unclosed-quote",
            "rows.csv",
            csv_text.replace('"A: Is the car', '"A: Is the car\n', 1)
            .replace('ready at 2."', "ready at 2.", 1)
            .encode(),
        )
    )
    for i in range(8):
        cut = rng.randrange(1, len(csv_text))
        out.append((f"rows.csv:truncated-{i}", "rows.csv", csv_text[:cut].encode()))
    for ch in ("\x00", "\x07"):
        out.append(
            (
                f"rows.csv:control-{ord(ch)}",
                "rows.csv",
                csv_text.replace("car", f"c{ch}ar").encode(),
            )
        )
    return out


def pref_inputs() -> list[tuple[str, bytes]]:
    rng = random.Random(SEED + 1)
    return [(n, b) for n, b in _mutations(_jsonl(PAIRS), rng, key="chosen")] + [
        (f"extra-{i}", b)
        for i, (n, b) in enumerate(_mutations(_jsonl(PAIRS[:2]), rng, key="prompt"))
    ]


def api_inputs() -> list[tuple[str, bytes]]:
    rng = random.Random(SEED + 2)
    body = json.dumps(
        {"messages": [{"role": "user", "content": ROWS[0]["input"]}], "max_tokens": 8}
    )
    out = [(n, b) for n, b in _mutations(body, rng, key="content")]
    out += [(f"role-{n}", b) for n, b in _mutations(body, rng, key="role")]
    out += [
        ("not-an-object", b"[1, 2]"),
        ("number", b"7"),
        ("messages-null", b'{"messages": null}'),
        ("deep-messages", ('{"messages": ' + _deep(30_000) + "}").encode()),
    ]
    return out


DATASET_INPUTS = dataset_inputs()
PREF_INPUTS = pref_inputs()
API_INPUTS = api_inputs()


def test_the_generator_makes_over_500_malformed_inputs() -> None:
    pasted = [d for d in DATASET_INPUTS if not d[1].endswith(".csv")]
    total = len(DATASET_INPUTS) + len(pasted) + len(PREF_INPUTS) + len(API_INPUTS)
    assert total >= 500, total


def _stored(*folders: Path) -> list[Path]:
    return [p for f in folders if f.exists() for p in f.rglob("*") if p.is_file()]


@pytest.fixture
def web(project: Project, settings: Any, tmp_path: Path) -> tuple[Client, Path, Path]:
    datasets_dir, uploads_dir = tmp_path / "datasets", tmp_path / "uploads"
    uploads_dir.mkdir()
    settings.DATASETS_DIR = datasets_dir
    settings.FILE_UPLOAD_TEMP_DIR = str(uploads_dir)
    client = Client(raise_request_exception=False)
    client.force_login(project.owner)
    return client, datasets_dir, uploads_dir


def _assert_refusal_or_staged(client: Client, project: Project, response: Any, what: str) -> None:
    assert response.status_code < 500, f"{what}: {response.status_code}"
    if response.status_code == 302:  # staged: its report page and a check must not crash
        page = client.get(response["Location"])
        assert page.status_code == 200, what
        check = client.post(
            response["Location"],
            {**STAGED_MAPPING, "action": "check"},
        )
        assert check.status_code < 500, what
        token = response["Location"].rstrip("/").rsplit("/", 1)[-1]
        client.post(reverse("dataset_staged_discard", args=[project.slug, token]))
        return
    text = html.unescape(response.content.decode())
    assert "not stored" in text or 'role="alert"' in text, f"{what}: no refusal shown"
    assert CAUSE.search(text), f"{what}: the refusal names no line or cause"


@pytest.mark.parametrize("case", [c[0] for c in DATASET_INPUTS])
def test_a_malformed_dataset_file_is_refused_or_reported_and_leaves_nothing(
    case: str, web: tuple[Client, Path, Path], project: Project
) -> None:
    client, datasets_dir, uploads_dir = web
    _, filename, data = next(c for c in DATASET_INPUTS if c[0] == case)

    response = client.post(
        reverse("dataset_upload", args=[project.slug]),
        {"file": SimpleUploadedFile(filename, data), "text": "", "name": ""},
    )

    _assert_refusal_or_staged(client, project, response, case)
    assert _stored(datasets_dir, uploads_dir) == [], case
    assert not Dataset.objects.exists()


@pytest.mark.parametrize("case", [c[0] for c in DATASET_INPUTS if not c[1].endswith(".csv")])
def test_malformed_pasted_rows_are_refused_or_reported_and_leave_nothing(
    case: str, web: tuple[Client, Path, Path], project: Project
) -> None:
    client, datasets_dir, uploads_dir = web
    data = next(c for c in DATASET_INPUTS if c[0] == case)[2]
    text = data.decode("utf-8", errors="replace")
    if not text.strip():
        text = "\x00"  # an empty paste is the form's own "required" error; send something

    response = client.post(
        reverse("dataset_upload", args=[project.slug]), {"text": text, "name": "pasted"}
    )

    if response.status_code == 200 and "not stored" not in response.content.decode():
        assert response.status_code < 500
        assert 'class="error' in response.content.decode(), case  # a form error, shown
    else:
        _assert_refusal_or_staged(client, project, response, case)
    assert _stored(datasets_dir, uploads_dir) == [], case
    assert not Dataset.objects.exists()


@pytest.mark.parametrize("case", [c[0] for c in PREF_INPUTS])
def test_a_malformed_preference_file_is_refused_line_by_line_or_imported(
    case: str, web: tuple[Client, Path, Path], project: Project
) -> None:
    client, _, _ = web
    data = next(c for c in PREF_INPUTS if c[0] == case)[1]

    response = client.post(
        reverse("prefset_import", args=[project.slug]),
        {"name": "Fuzzed", "file": SimpleUploadedFile("prefs.jsonl", data)},
    )

    assert response.status_code < 500, case
    if not PreferenceSet.objects.exists():
        text = html.unescape(response.content.decode())
        assert CAUSE.search(text), f"{case}: the refusal names no line or cause"
    PreferenceSet.objects.all().delete()


@pytest.fixture
def api_token(project: Project, owner: User, tiny_model: CatalogModel, monkeypatch: Any) -> str:
    job = JobFactory.create(
        project=project, created_by=owner, kind=JobKind.EXPORT, status=JobStatus.SUCCEEDED
    )
    variant = ModelVariant.objects.create(
        project=project, job=job, kind=VariantKind.INT8, parent=tiny_model, path="/tmp/x"
    )
    variant_deploy(project=project, variant=variant, actor=owner)
    reply = {
        "ok": True,
        "text": "ok",
        "prompt_tokens": 1,
        "completion_tokens": 1,
        "finish_reason": "stop",
    }
    monkeypatch.setattr("lifecycle_app.stages.deploy.api.serve_request", lambda **kw: reply)
    return api_token_create(project=project, actor=owner, name="fuzz")[1]


@pytest.mark.parametrize("case", [c[0] for c in API_INPUTS])
def test_a_malformed_api_body_gets_a_json_error_never_a_500(
    case: str, project: Project, api_token: str
) -> None:
    body = next(c for c in API_INPUTS if c[0] == case)[1]

    response = Client(raise_request_exception=False).post(
        reverse("api_generate", args=[project.slug]),
        data=body,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {api_token}",
    )

    assert response.status_code in (200, 400, 413), f"{case}: {response.status_code}"
    if response.status_code != 200:
        error = response.json()["error"]
        assert error["message"], case
