"""Prompt trials in a real browser on a real worker: write a few-shot template, run it and
a zero-shot trial from the Prompt engineering step, then compare them side by side."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import BrowserContext, Page, expect
from pytest_django.live_server_helper import LiveServer

from lifecycle_app.models import CatalogModel, Dataset, Job, JobStatus, Project
from lifecycle_app.stages.prompt.services import template_create
from tests.browser.conftest import log_in
from tests.integration.conftest import WorkerProcess
from tests.integration.sample_data import sample_dialogues

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

JOB_TIMEOUT_MS = 60_000
ROWS = 4
FIELDS = {
    "instruction": "Summarize the dialogue in one sentence.",
    "example_format": "Dialogue: {input}\nSummary: {target}",
    "body": "{instruction}\n\n{examples}Dialogue: {input}\nSummary:",
    "use_chat_template": True,
}


@pytest.fixture
def dialogues(
    shared_storage: Path, project: Project, owner: User, tmp_path: Path, tiny_folder: Path
) -> Dataset:
    return sample_dialogues(project, owner, tmp_path / "uploads", fractions=(0.8, 0.1, 0.1))


def run_trial(page: Page, *, shots: int) -> int:
    """Fill the trial form (tiny model, the template, `shots`), run it, wait for success."""
    expect(page.get_by_role("heading", name="Prompt engineering")).to_be_visible()
    page.select_option("#id_base_model", "tiny")
    page.select_option("#id_template", label="Few-shot summary v1")
    page.fill("#id_n_rows", str(ROWS))
    page.fill("#id_shots", str(shots))
    page.fill("#id_max_new_tokens", "8")
    expect(page.get_by_test_id("final-prompt")).to_contain_text("Summary:")
    page.get_by_test_id("run-trial").click()

    page.wait_for_url(re.compile(r"/trials/\d+/$"))
    live = page.locator("#trial-live")
    expect(live).to_have_attribute("data-status", "succeeded", timeout=JOB_TIMEOUT_MS)
    expect(page.locator("table[data-testid=examples] tr[data-status=done]")).to_have_count(ROWS)
    match = re.search(r"/trials/(\d+)/$", page.url)
    assert match
    return int(match.group(1))


def test_two_trials_run_and_compare_side_by_side(
    page: Page,
    context: BrowserContext,
    live_server: LiveServer,
    live_worker: WorkerProcess,
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    dialogues: Dataset,
) -> None:
    base = live_server.url
    log_in(context, base, owner)
    page.goto(f"{base}/p/{project.slug}/adapt/prompt/")
    page.get_by_role("link", name="New template").click()

    expect(page.get_by_role("heading", name="New prompt template")).to_be_visible()
    # The suggestion for a summary task already places {examples}: keep it, rename it.
    expect(page.locator("#id_body")).to_have_value(re.compile(r"\{examples\}"))
    page.fill("#id_name", "Few-shot summary")
    page.get_by_role("button", name="Save template").click()

    few_shot = run_trial(page, shots=2)
    page.screenshot(path="/tmp/pw_trial_few_shot.png", full_page=True)
    page.goto(f"{base}/p/{project.slug}/adapt/prompt/")
    # The form starts from the last trial's settings.
    expect(page.locator("#id_shots")).to_have_value("2")
    zero_shot = run_trial(page, shots=0)

    page.goto(f"{base}/p/{project.slug}/trials/")
    expect(page.locator("tr[data-trial]")).to_have_count(2)
    page.check(f"#pick-{few_shot}")
    page.check(f"#pick-{zero_shot}")
    page.screenshot(path="/tmp/pw_trial_list.png", full_page=True)
    page.get_by_role("button", name="Compare selected side by side").click()

    expect(page.get_by_role("heading", name="Side by side")).to_be_visible()
    table = page.get_by_test_id("side-by-side")
    expect(table.locator("tbody tr")).to_have_count(ROWS)
    expect(table.locator("thead")).to_contain_text(f"#{few_shot} · 2-shot")
    expect(table.locator("thead")).to_contain_text(f"#{zero_shot} · 0-shot")
    expect(table.locator("p.reference")).to_have_count(ROWS)
    for reference in table.locator("p.reference").all():
        expect(reference).to_contain_text(re.compile(r"Reference: \S"))
    page.screenshot(path="/tmp/pw_trial_compare.png", full_page=True)

    jobs = {j.id: j for j in Job.objects.filter(id__in=[few_shot, zero_shot])}
    assert all(j.status == JobStatus.SUCCEEDED for j in jobs.values())
    assert (jobs[few_shot].params["shots"], jobs[zero_shot].params["shots"]) == (2, 0)
    assert jobs[few_shot].prompt_template_id == jobs[zero_shot].prompt_template_id


def test_run_trial_lands_on_the_whole_trial_page_and_the_best_one_shows_on_the_project(
    page: Page,
    context: BrowserContext,
    live_server: LiveServer,
    live_worker: WorkerProcess,
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    dialogues: Dataset,
) -> None:
    template_create(project=project, user=owner, name="Few-shot summary", fields=FIELDS)
    base = live_server.url
    log_in(context, base, owner)
    page.goto(f"{base}/p/{project.slug}/adapt/prompt/")

    trial_id = run_trial(page, shots=1)
    page.screenshot(path="/tmp/pw_trial_landing.png", full_page=True)
    # Checked now, asserted last, so the rest of the flow still runs when it fails.
    whole_page = page.get_by_role("heading", name=f"Prompt trial #{trial_id}").is_visible()
    nav_shown = page.get_by_role("link", name="Trials", exact=True).is_visible()

    page.reload()
    page.get_by_test_id("mark-best").click()
    expect(page.get_by_text("★ current best")).to_be_visible()
    page.goto(f"{base}/p/{project.slug}/")
    best = page.get_by_test_id("best-trial")
    expect(best).to_contain_text(f"Trial #{trial_id}")
    expect(best).to_contain_text("Few-shot summary v1, 1-shot, Tiny test model")
    expect(best).to_contain_text("ROUGE-L")
    page.screenshot(path="/tmp/pw_trial_best.png", full_page=True)

    assert whole_page and nav_shown, (
        "After Run trial, the trial page shows only its live fragment: no heading, "
        "no breadcrumbs, no 'Mark as the best prompt' button"
    )
