"""Evaluation in a real browser on a real worker: pick the zero-shot base model and a
one-shot prompt trial on the Evaluate step, run them on the same sampled test rows, read
the scorecard (changes against the baseline, the chart, another baseline), and open the
side-by-side view sorted by score difference."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import BrowserContext, Page, expect
from pytest_django.live_server_helper import LiveServer

from lifecycle_app.models import (
    CandidateStatus,
    CatalogModel,
    Dataset,
    EvaluationCandidate,
    JobKind,
    JobStatus,
    Project,
    PromptTemplate,
)
from lifecycle_app.stages.prompt.building import snapshot
from lifecycle_app.stages.prompt.services import template_create
from tests.browser.conftest import log_in
from tests.factories import JobFactory
from tests.integration.conftest import WorkerProcess
from tests.integration.sample_data import sample_dialogues
from workers.ml.params import TrialParams

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

JOB_TIMEOUT_MS = 90_000
ROWS = 4
SHOTS = Path("/tmp")


@pytest.fixture
def dialogues(
    shared_storage: Path, project: Project, owner: User, tmp_path: Path, tiny_folder: Path
) -> Dataset:
    return sample_dialogues(project, owner, tmp_path / "uploads", fractions=(0.7, 0.1, 0.2))


@pytest.fixture
def template(project: Project, owner: User) -> PromptTemplate:
    return template_create(
        project=project,
        user=owner,
        name="Few-shot summary",
        fields={
            "instruction": "Summarize the dialogue in one sentence.",
            "example_format": "Dialogue: {input}\nSummary: {target}",
            "body": "{instruction}\n\n{examples}Dialogue: {input}\nSummary:",
            "use_chat_template": True,
        },
    )


def test_an_evaluation_runs_from_the_browser_and_shows_scorecard_and_side_by_side(
    page: Page,
    context: BrowserContext,
    live_server: LiveServer,
    live_worker: WorkerProcess,
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    dialogues: Dataset,
    template: PromptTemplate,
) -> None:
    trial = JobFactory.create(
        project=project,
        created_by=owner,
        kind=JobKind.TRIAL,
        status=JobStatus.SUCCEEDED,
        base_model=tiny_model,
        dataset=dialogues,
        prompt_template=template,
        params=TrialParams(
            model_ref="tiny",
            dataset_id=dialogues.id,
            shots=1,
            max_new_tokens=6,
            template=snapshot(template),
        ).model_dump(),
        result={"scores": {"rougeL": 0.01}},
    )
    base = live_server.url
    log_in(context, base, owner)
    page.goto(f"{base}/p/{project.slug}/adapt/evaluate/")
    expect(page.get_by_role("heading", name="Evaluate")).to_be_visible()
    page.get_by_label("Tiny test model · zero-shot").check()
    page.get_by_label(re.compile(rf"Trial #{trial.id} ·")).check()
    page.select_option("#id_split", "test")
    page.fill("#id_n_rows", str(ROWS))
    page.fill("#id_max_new_tokens", "6")
    page.screenshot(path=str(SHOTS / "pw_eval_step.png"), full_page=True)
    page.get_by_test_id("run-evaluation").click()

    page.wait_for_url(re.compile(r"/evaluations/\d+/$"))
    live = page.locator("#eval-live")
    expect(live).to_have_attribute("data-status", "succeeded", timeout=JOB_TIMEOUT_MS)
    card = page.get_by_test_id("scorecard")
    expect(card.locator("tr[data-status=done]")).to_have_count(2)
    expect(card.locator("thead")).to_contain_text("ROUGE-Lsum")
    expect(card.locator("thead")).to_contain_text("BLEU")
    expect(card.locator("thead")).to_contain_text("Perplexity")
    expect(card.locator("thead")).to_contain_text("General knowledge (multiple choice)")
    baseline_row = card.locator("tr.baseline")
    expect(baseline_row).to_contain_text("Tiny test model · zero-shot")
    # The trial's row carries its changes against the baseline (absolute and relative).
    trial_row = card.locator("tr.candidate").nth(1)
    expect(trial_row.get_by_test_id("delta").first).to_have_text(re.compile(r"^[+-]\d\.\d{3}"))
    expect(page.locator("canvas#scorecard-chart")).to_be_visible()
    page.screenshot(path=str(SHOTS / "pw_eval_scorecard.png"), full_page=True)

    # Another baseline: the trial's row becomes the baseline.
    trial_candidate = EvaluationCandidate.objects.get(kind="trial", status=CandidateStatus.DONE)
    page.select_option("#baseline", str(trial_candidate.id))
    page.get_by_role("button", name="Compare against it").click()
    expect(card.locator("tr.baseline")).to_contain_text(f"Trial #{trial.id}")

    page.get_by_test_id("open-side-by-side").click()
    expect(page.get_by_role("heading", name="Side by side")).to_be_visible()
    table = page.get_by_test_id("eval-side-by-side")
    expect(table.locator("tbody tr")).to_have_count(ROWS)
    expect(table.locator("p.reference")).to_have_count(ROWS)
    page.select_option("#sort", "-diff")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#sort")).to_have_value("-diff")
    diffs = [
        float(d) if d else None
        for d in table.locator("tbody tr").evaluate_all(
            "rows => rows.map(r => r.dataset.difference)"
        )
    ]
    present = [d for d in diffs if d is not None]
    assert present == sorted(present)
    page.screenshot(path=str(SHOTS / "pw_eval_side_by_side.png"), full_page=True)
