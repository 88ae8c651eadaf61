"""Datasets in a real browser: upload the sample, check and map it, save it, and watch the
real worker's profile appear as drawn histograms."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.db import transaction
from playwright.sync_api import BrowserContext, Page, expect
from pytest_django.live_server_helper import LiveServer

import lifecycle_app
from lifecycle_app.models import CatalogModel, Dataset, Job, JobKind, JobStatus, Project
from lifecycle_app.projects.services import stage_step_save
from tests.browser.conftest import log_in
from tests.integration.conftest import WorkerProcess

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SAMPLE = Path(lifecycle_app.__file__).resolve().parent / "samples" / "dialogue_summaries.jsonl"
PROFILE_TIMEOUT_MS = 60_000


def test_an_uploaded_dataset_is_mapped_saved_and_profiled(
    page: Page,
    context: BrowserContext,
    live_server: LiveServer,
    live_worker: WorkerProcess,
    shared_storage: Path,
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
) -> None:
    with transaction.atomic():  # stage_step_save locks the stage row
        stage_step_save(
            project=project, stage_key="select", step_slug="model", answers={"base_model": "tiny"}
        )
    base = live_server.url
    log_in(context, base, owner)

    page.goto(f"{base}/p/{project.slug}/datasets/")
    expect(page.get_by_role("heading", name="Datasets", exact=True)).to_be_visible()
    expect(page.get_by_text("No datasets yet.")).to_be_visible()
    page.set_input_files("#id_file", str(SAMPLE))
    page.get_by_role("button", name="Upload and check").click()

    expect(page.get_by_role("heading", name=f"Check and map “{SAMPLE.name}”")).to_be_visible()
    preview = page.locator("table.preview")
    expect(preview.locator("th")).to_have_text(["dialogue", "summary"])
    expect(preview).to_contain_text("Lantern Bistro")
    report = page.get_by_test_id("validation-report")
    expect(report).to_contain_text("181 valid, none dropped.")

    page.select_option("#id_input_field", "dialogue")
    page.select_option("#id_target_field", "summary")
    page.fill("#id_name", "Bistro dialogues")
    page.fill("#id_train", "0.8")
    page.fill("#id_validation", "0.1")
    page.fill("#id_test", "0.1")
    page.fill("#id_seed", "42")
    page.locator("button[value=save]").click()

    expect(page.get_by_role("heading", name="Bistro dialogues")).to_be_visible()
    dataset = Dataset.objects.get()
    assert page.url == f"{base}/p/{project.slug}/datasets/{dataset.id}/"
    assert dataset.split_counts == {"train": 145, "validation": 18, "test": 18}
    expect(page.get_by_text("train 145 · validation 18 · test 18")).to_be_visible()

    # The profile job runs on the worker; the page polls and then draws both histograms.
    drawn = page.locator("canvas[data-histogram][data-drawn]")
    expect(drawn).to_have_count(2, timeout=PROFILE_TIMEOUT_MS)
    job = Job.objects.get(dataset=dataset)
    assert job.kind == JobKind.PROFILE
    assert job.status == JobStatus.SUCCEEDED
    assert job.base_model == tiny_model
    dataset.refresh_from_db()
    assert sum(dataset.profile["input_tokens"]["counts"]) == 181
    expect(page.get_by_text("Tokenizer of Tiny test model")).to_be_visible()
