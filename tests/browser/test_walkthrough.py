"""The wizard in a real browser: sign up, scope, select, run a prompt on a real worker."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import BrowserContext, Page, expect
from pytest_django.live_server_helper import LiveServer

from lifecycle_app.models import CatalogModel, Job, JobStatus, Project, Stage, StageKey
from tests.browser.conftest import log_in
from tests.factories import PASSWORD
from tests.integration.conftest import WorkerProcess

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

JOB_TIMEOUT_MS = 60_000
USE_CASE = "Summarize a customer support ticket in one sentence for the on-call agent."
EXAMPLES = [
    ("My invoice shows two charges for March.", "Customer was billed twice in March."),
    ("The app logs me out every few minutes.", "User is logged out repeatedly."),
    ("Please change my delivery address to Oslo.", "Customer asks to change the address."),
]


def _fill_scope(page: Page, examples: list[tuple[str, str]]) -> None:
    page.select_option("#id_task_type", "summarization")
    page.fill("#id_use_case", USE_CASE)
    for i, (text, summary) in enumerate(examples):
        page.fill(f"#id_ex-{i}-input", text)
        page.fill(f"#id_ex-{i}-output", summary)
    page.fill("#id_metric_target", "0.35")
    page.get_by_role("button", name="Save and continue").click()


def test_a_new_user_goes_from_sign_up_to_a_finished_prompt_run(
    page: Page, live_server: LiveServer, live_worker: WorkerProcess, tiny_model: CatalogModel
) -> None:
    base = live_server.url
    page.goto(f"{base}/accounts/signup/")
    page.fill("#id_username", "dana")
    page.fill("#id_password1", PASSWORD)
    page.fill("#id_password2", PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("heading", name="Your projects")).to_be_visible()

    page.fill("#id_name", "Ticket summaries")
    page.get_by_role("button", name="Create project").click()
    page.get_by_role("link", name="Continue: Define the use case").click()

    expect(page.locator("#id_use_case")).to_be_visible()
    _fill_scope(page, EXAMPLES)

    expect(page.get_by_role("heading", name="Choose a model")).to_be_visible()
    page.check("#model-tiny")
    page.get_by_role("button", name="Use this model").click()

    # Select continues to the compute planner, already planning the picked model.
    expect(page.get_by_role("heading", name="Plan compute and memory")).to_be_visible()
    expect(page.get_by_test_id("verdict")).to_be_visible()
    page.get_by_role("button", name="Save this plan and continue").click()

    # Prompt engineering is measured trials; a single prompt goes to the playground.
    expect(page.get_by_role("heading", name="Prompt engineering")).to_be_visible()
    page.get_by_role("link", name="playground").click()
    expect(page.get_by_role("heading", name="Playground")).to_be_visible()
    expect(page.locator("#id_base_model")).to_have_value("tiny")
    page.evaluate("window.__marker = 1")
    page.fill("#id_prompt", "Summarize: the printer on floor 3 is jammed again.")
    page.fill("#id_max_new_tokens", "16")
    page.get_by_role("button", name="Run prompt").click()

    expect(page.locator(".job-status[data-status=succeeded]")).to_be_visible(timeout=JOB_TIMEOUT_MS)
    generated = page.get_by_test_id("generated-text")
    expect(generated).to_have_count(1)
    assert generated.inner_text().strip()
    # The run was started and followed by htmx swaps, not page loads.
    assert page.evaluate("window.__marker") == 1

    job = Job.objects.get()
    assert job.status == JobStatus.SUCCEEDED
    assert job.created_by is not None
    assert job.created_by.username == "dana"
    assert job.params["max_new_tokens"] == 16
    assert job.base_model == tiny_model

    page.get_by_role("navigation").get_by_role("link", name="Jobs", exact=True).click()
    expect(page.get_by_role("heading", name="All your jobs")).to_be_visible()
    row = page.locator(f"tr[data-job='{job.id}']")
    expect(row.locator(".badge")).to_have_text("Succeeded")
    expect(row).to_contain_text("Ticket summaries")


def test_an_empty_prompt_is_refused_and_starts_no_job(
    page: Page,
    context: BrowserContext,
    live_server: LiveServer,
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
) -> None:
    base = live_server.url
    log_in(context, base, owner)
    page.goto(f"{base}/p/{project.slug}/playground/")
    page.evaluate("window.__marker = 1")

    for prompt in ("", "   "):
        page.fill("#id_prompt", prompt)
        page.get_by_role("button", name="Run prompt").click()

        expect(page.get_by_text("Enter a prompt.")).to_be_visible()
        expect(page.get_by_role("heading", name="Playground")).to_be_visible()
    assert page.evaluate("window.__marker") == 1  # re-rendered by htmx, in place
    assert not Job.objects.exists()


def test_scope_with_only_two_examples_shows_an_error_and_stays_on_scope(
    page: Page, context: BrowserContext, live_server: LiveServer, project: Project, owner: User
) -> None:
    base = live_server.url
    scope_url = f"{base}/p/{project.slug}/scope/use-case/"
    log_in(context, base, owner)
    page.goto(scope_url)

    _fill_scope(page, EXAMPLES[:2])

    expect(
        page.get_by_text("Add at least 3 examples (input and output); you have 2.")
    ).to_be_visible()
    expect(page.get_by_role("heading", name="Define the use case")).to_be_visible()
    assert page.url == scope_url
    # What was typed is kept, so the user only adds the missing example.
    expect(page.locator("#id_ex-1-input")).to_have_value(EXAMPLES[1][0])
    stage = Stage.objects.get(project=project, key=StageKey.SCOPE)
    assert "answers" not in stage.step("use-case")
