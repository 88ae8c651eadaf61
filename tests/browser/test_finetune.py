"""Fine-tuning in a real browser on a real worker: start a LoRA run from the wizard step
(the plan shows the trainable parameters first), then watch the dashboard's loss curves
grow while the run trains, without a page reload, until it succeeds with a candidate."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import BrowserContext, Page, expect
from pytest_django.live_server_helper import LiveServer

from lifecycle_app.models import CatalogModel, Dataset, Job, JobStatus, Project
from tests.browser.conftest import log_in
from tests.integration.conftest import WorkerProcess
from tests.integration.sample_data import sample_dialogues, summary_template

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

JOB_TIMEOUT_MS = 240_000  # a loaded 2-core CI machine trains the tiny model at ~2 steps/s
STEPS = 150
# 0 until Chart.js (deferred) has drawn the chart.
POINTS = (
    "(window.Chart && Chart.getChart('curves') "
    "? Chart.getChart('curves').data.datasets[0].data.length : 0)"
)


@pytest.fixture
def dialogues(
    shared_storage: Path, project: Project, owner: User, tmp_path: Path, tiny_folder: Path
) -> Dataset:
    summary_template(project, owner)
    return sample_dialogues(project, owner, tmp_path / "uploads", fractions=(0.8, 0.1, 0.1))


def test_a_lora_run_draws_its_loss_curves_live_and_ends_with_a_candidate(
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
    page.goto(f"{base}/p/{project.slug}/adapt/fine-tune/")
    expect(page.get_by_role("heading", name="Fine-tuning")).to_be_visible()
    page.select_option("#id_base_model", "tiny")
    page.fill("#id_max_steps", str(STEPS))
    page.fill("#id_batch_size", "2")
    page.fill("#id_eval_every", "50")
    page.fill("#id_checkpoint_every", "100")
    # The plan (trainable parameters, memory verdict) is there before launch.
    expect(page.locator("#ft-plan")).to_contain_text("trainable")
    # (Not full_page: resizing the viewport for it can swallow the next click.)
    page.screenshot(path="/tmp/pw_finetune_step.png")
    page.get_by_test_id("start-training").click()

    page.wait_for_url(re.compile(r"/finetune/\d+/$"))
    live = page.locator("#ft-live")
    expect(live).to_have_attribute("data-status", "running", timeout=JOB_TIMEOUT_MS)
    # Function form: under the Content-Security-Policy a bare expression string would
    # need eval, which the policy refuses.
    page.evaluate("window.__marker = 'no reload'")
    page.wait_for_function(f"() => {POINTS} >= 3", timeout=JOB_TIMEOUT_MS)
    seen = page.evaluate(POINTS)
    page.screenshot(path="/tmp/pw_finetune_running.png", full_page=True)
    # More points arrive while it runs, in the same page.
    page.wait_for_function(f"() => {POINTS} > {seen}", timeout=JOB_TIMEOUT_MS)
    assert page.locator("#ft-live").get_attribute("data-status") in ("running", "succeeded")

    expect(live).to_have_attribute("data-status", "succeeded", timeout=JOB_TIMEOUT_MS)
    assert page.evaluate("window.__marker") == "no reload"
    page.wait_for_function(f"() => {POINTS} == {STEPS}", timeout=10_000)
    validation = page.evaluate("Chart.getChart('curves').data.datasets[2].data.length")
    assert validation == STEPS // 50 + 1  # the untrained model, then every 50 steps
    expect(page.get_by_test_id("step")).to_have_text(f"{STEPS} / {STEPS}")
    page.screenshot(path="/tmp/pw_finetune_done.png", full_page=True)

    job = Job.objects.get(project=project)
    assert job.status == JobStatus.SUCCEEDED
    assert CatalogModel.objects.filter(trained_by_job=job, project=project).count() == 1
