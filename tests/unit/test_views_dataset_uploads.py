"""Uploads through the web that once crashed, were refused as a whole or said too little
(issue 17): deep nesting, repeated keys, control characters, other delimiters, UTF-16
without a BOM, open quotes, unknown chat roles, repeated rejection sentences, splits left
empty by a small file, long file names. The malformed files themselves are in
`bad_files` and run through `test_views_bad_files`; these check what the pages add."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from lifecycle_app.datasets.services import short_filename
from lifecycle_app.models import Dataset, Project
from tests.unit.bad_files import STAGED_MAPPING

MAPPING = STAGED_MAPPING


@pytest.fixture(autouse=True)
def storage(settings: Any, tmp_path: Path) -> Path:
    settings.DATASETS_DIR = tmp_path / "datasets"
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path / "uploads")
    (tmp_path / "uploads").mkdir()
    return tmp_path


@pytest.fixture(autouse=True)
def no_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("lifecycle_app.jobs.services._enqueue", lambda job_id: None)


@pytest.fixture
def client(project: Project) -> Client:
    client = Client()
    client.force_login(project.owner)
    return client


def text_of(response: Any) -> str:
    return html.unescape(response.content.decode())


def upload(client: Client, project: Project, filename: str, data: bytes) -> Any:
    return client.post(
        reverse("dataset_upload", args=[project.slug]),
        {"file": SimpleUploadedFile(filename, data), "text": "", "name": ""},
    )


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def test_pasted_rows_nested_tens_of_thousands_deep_are_a_row_problem_not_a_crash(
    client: Client, project: Project, storage: Path
) -> None:
    rows = [
        json.dumps({"input": "a", "target": "b"}),
        '{"input": "q", "target": ' + "[" * 40_000 + "]" * 40_000 + "}",
        json.dumps({"input": "c", "target": "d"}),
    ]
    response = client.post(
        reverse("dataset_upload", args=[project.slug]),
        {"text": "\n".join(rows) + "\n", "name": ""},
    )

    assert response.status_code == 302
    page = text_of(client.get(response["Location"]))
    assert "Line 2: nested too deeply (more than 64 levels of arrays and objects)." in page
    assert "2 valid, 1 dropped: 1 malformed line." in page


def test_a_semicolon_csv_is_read_with_its_delimiter_and_says_so(
    client: Client, project: Project
) -> None:
    data = b"input;target\nhello, world;greeting\nhow are you;question\nbye;farewell\n"

    response = upload(client, project, "data.csv", data)

    assert response.status_code == 302
    page = text_of(client.get(response["Location"]))
    assert "cells separated by semicolons (;)" in page
    assert "<th>input</th>" in page and "<th>target</th>" in page
    assert "hello, world" in page
    assert "3 valid, none dropped." in page
    assert "must be a different field" not in page


def test_a_one_column_csv_says_one_column_and_the_separator_it_seems_to_use(
    client: Client, project: Project, storage: Path
) -> None:
    response = upload(client, project, "data.csv", b"input:target\na:b\nc:d\n")

    page = text_of(response)
    assert "This file was not stored." in page
    assert "Only one column was found: the header is 'input:target'." in page
    assert "The header seems to use ':' between columns." in page
    assert files_under(storage) == []


@pytest.mark.parametrize(
    ("codec", "name"),
    [("utf-16-le", "UTF-16 (LE)"), ("utf-16-be", "UTF-16 (BE)"), ("utf-32-be", "UTF-32 (BE)")],
)
def test_utf16_and_utf32_without_a_bom_are_named_not_called_binary(
    codec: str, name: str, client: Client, project: Project, storage: Path
) -> None:
    data = "input,target\ncafé,crème\n".encode(codec)

    page = text_of(upload(client, project, "data.csv", data))

    assert f"This looks like {name} without a byte-order mark, not a CSV file" in page
    assert "save it as UTF-8" in page
    assert "binary" not in page
    assert files_under(storage) == []


def test_one_nul_in_a_text_file_is_reported_on_its_line_not_as_binary(
    client: Client, project: Project
) -> None:
    data = b"input,target\n\x00hello,world\nb,c\nd,e\n"

    response = upload(client, project, "data.csv", data)

    assert response.status_code == 302
    page = text_of(client.get(response["Location"]))
    assert (
        "Line 2: the input 'input' holds a control character (NUL, U+0000) at character 1 "
        "of the cell" in page
    )
    assert "binary" not in page


def test_each_chat_message_content_is_checked_for_control_characters(
    client: Client, project: Project
) -> None:
    def chat(content: str) -> dict[str, Any]:
        return {
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": content},
            ]
        }

    data = b"".join(json.dumps(chat(c)).encode() + b"\n" for c in ("Hello", "Bell\x07", "Yo"))

    response = upload(client, project, "chat.jsonl", data)

    page = text_of(client.get(response["Location"]))
    assert (
        "Line 2: the content of message 2 in 'messages' holds a control character "
        "(a control character, U+0007) at character 5 of the cell" in page
    )


def test_a_rejection_says_each_sentence_once(
    client: Client, project: Project, storage: Path
) -> None:
    page = text_of(upload(client, project, "data.csv", b"input,target\na,b,c\nd,e,f\n"))

    assert "This file was not stored." in page
    assert page.count("Line 2: 3 cells, but the header has 2 columns.") == 1
    assert page.count("Line 3: 3 cells, but the header has 2 columns.") == 1  # a bullet
    assert files_under(storage) == []


def test_a_file_too_small_for_every_split_is_warned_before_and_after_saving(
    client: Client, project: Project
) -> None:
    data = b"".join(
        json.dumps({"input": f"q{i}", "target": f"a{i}"}).encode() + b"\n" for i in range(3)
    )
    location = upload(client, project, "small.jsonl", data)["Location"]

    page = text_of(client.get(location))
    assert (
        "The validation split would be empty: 3 valid rows at fractions 0.8 / 0.1 / 0.1 give "
        "it none. It needs at least 4 valid rows at these fractions (or a larger validation "
        "fraction)." in page
    )
    assert "The test split would be empty: 3 valid rows" in page
    assert "It needs at least 7 valid rows" in page

    saved = client.post(location, {**MAPPING, "action": "save"})
    detail = text_of(client.get(saved["Location"]))
    assert "The validation split is empty: 3 valid rows" in detail
    assert "The test split is empty" in detail


def test_a_dataset_large_enough_for_every_split_gets_no_warning(
    client: Client, project: Project
) -> None:
    data = b"".join(
        json.dumps({"input": f"q{i}", "target": f"a{i}"}).encode() + b"\n" for i in range(20)
    )
    location = upload(client, project, "enough.jsonl", data)["Location"]

    assert 'data-testid="split-warning"' not in text_of(client.get(location))


def test_a_300_character_file_name_keeps_its_extension_on_download(
    client: Client, project: Project
) -> None:
    filename = "q" * 296 + ".csv"
    location = upload(client, project, filename, b"input,target\na,b\nc,d\n")["Location"]

    client.post(location, {**MAPPING, "action": "save"})
    dataset = Dataset.objects.get()
    response = client.get(reverse("dataset_download", args=[project.slug, dataset.id]))

    assert dataset.original_filename == "q" * 196 + ".csv"
    assert response["Content-Disposition"].endswith('.csv"')
    clean = client.get(
        reverse("dataset_download", args=[project.slug, dataset.id]), {"file": "clean"}
    )
    assert clean["Content-Disposition"].endswith('.clean.jsonl"')


@pytest.mark.parametrize(
    ("name", "short"),
    [
        ("a.csv", "a.csv"),
        ("x" * 300, "x" * 200),
        ("x" * 300 + ".jsonl", "x" * 194 + ".jsonl"),
        ("x" * 150 + "." + "y" * 150, ("x" * 150 + "." + "y" * 150)[:200]),
    ],
)
def test_short_filename_shortens_the_stem_and_keeps_the_extension(name: str, short: str) -> None:
    assert short_filename(name) == short
