"""Every malformed file of the catalogue, uploaded through the web: the user sees the
specific message, and nothing is left behind (rejected at once, or discarded after the
report)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from lifecycle_app.models import Dataset, Project
from tests.unit.bad_files import MAX_ROWS, STAGED_MAPPING, bad_files

CASES = bad_files()
# Cases whose message is about mapping to a field the file does not have.
MAPPING_CASES = {"csv_missing_target_column", "unknown_field_mapping"}
MAPPING = STAGED_MAPPING


def stored_files(*folders: Path) -> list[Path]:
    return [p for folder in folders if folder.exists() for p in folder.rglob("*") if p.is_file()]


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_malformed_upload_is_explained_and_leaves_nothing_behind(
    name: str, client: Client, project: Project, settings: Any, tmp_path: Path
) -> None:
    datasets_dir, uploads_dir = tmp_path / "datasets", tmp_path / "uploads"
    uploads_dir.mkdir()
    settings.DATASETS_DIR = datasets_dir
    settings.FILE_UPLOAD_TEMP_DIR = str(uploads_dir)
    settings.DATASET_MAX_ROWS = MAX_ROWS
    filename, data, message, _line = CASES[name]
    client.force_login(project.owner)

    response = client.post(
        reverse("dataset_upload", args=[project.slug]),
        {"file": SimpleUploadedFile(filename, data), "text": "", "name": ""},
    )

    if response.status_code == 302:  # staged: the report shows the problem, then discard
        page = client.get(response["Location"])
        text = html.unescape(page.content.decode())
        token = response["Location"].rstrip("/").rsplit("/", 1)[-1]
        if message and name in MAPPING_CASES:
            # The web offers only the file's own fields, so a mapping to a missing one is
            # refused by the form before data.validation ever sees it.
            check = client.post(response["Location"], {**MAPPING, "action": "check"})
            assert "is not one of the available choices" in html.unescape(check.content.decode())
        elif message:
            assert message in text, f"{name}: {message!r} not on the staged page"
        client.post(reverse("dataset_staged_discard", args=[project.slug, token]))
    else:
        text = html.unescape(response.content.decode())
        assert message, f"{name}: an acceptable file was rejected"
        assert "This file was not stored." in text
        assert message in text
    assert stored_files(datasets_dir, uploads_dir) == []
    assert not Dataset.objects.exists()
