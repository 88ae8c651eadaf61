"""The fine-tuning step in a real browser: asking for 2 processes turns the memory verdict
into a per-process one (each process's share of the batch), live, before launch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import BrowserContext, Page, expect
from pytest_django.live_server_helper import LiveServer

from lifecycle_app.models import CatalogModel, Dataset, Project
from tests.browser.conftest import log_in
from tests.integration.sample_data import sample_dialogues, summary_template

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def dialogues(
    project: Project, owner: User, tmp_path: Path, tiny_folder: Path, settings: Any
) -> Dataset:
    for name in ("datasets", "uploads"):
        (tmp_path / name).mkdir()
    settings.DATASETS_DIR = tmp_path / "datasets"
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path / "uploads")
    summary_template(project, owner)
    return sample_dialogues(project, owner, tmp_path / "uploads", fractions=(0.8, 0.1, 0.1))


def test_two_processes_make_the_memory_verdict_per_process(
    page: Page,
    context: BrowserContext,
    live_server: LiveServer,
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    dialogues: Dataset,
) -> None:
    log_in(context, live_server.url, owner)
    page.goto(f"{live_server.url}/p/{project.slug}/adapt/fine-tune/")
    page.select_option("#id_base_model", "tiny")
    verdict = page.get_by_test_id("ft-verdict")
    expect(verdict).to_contain_text("a worker has")
    expect(verdict).not_to_contain_text("Per process")

    page.fill("#id_batch_size", "8")
    page.fill("#id_processes", "2")
    page.locator("#id_processes").press("Tab")  # a real change event, as a person's

    expect(verdict).to_contain_text(
        "Per process (2 processes, 4 rows of each batch)", timeout=20_000
    )
    expect(verdict).to_contain_text("each process has")
    page.screenshot(path="/tmp/pw_finetune_processes.png", full_page=True)
