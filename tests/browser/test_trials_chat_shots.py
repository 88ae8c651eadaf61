"""A chat-turn three-shot trial in a real browser on a real worker (issue 19): the preview
shows the shots as earlier chat turns, and the trials table shows the trial's change
against the zero-shot trial of the same model on the same rows."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import cast

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import BrowserContext, Page, expect
from pytest_django.live_server_helper import LiveServer

from lifecycle_app.models import CatalogModel, Dataset, Job, JobStatus, Project, TrialExample
from lifecycle_app.stages.prompt.services import template_create
from tests.browser.conftest import log_in
from tests.factories import CatalogModelFactory
from tests.integration.conftest import WorkerProcess
from tests.integration.sample_data import sample_dialogues

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

JOB_TIMEOUT_MS = 60_000
ROWS = 4
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
FIELDS = {
    "instruction": "Summarize the dialogue in one sentence.",
    "example_format": "Dialogue: {input}\nSummary: {target}",
    "body": "{instruction}\n\n{examples}Dialogue: {input}\nSummary:",
    "use_chat_template": True,
    "shot_style": "chat",
}


@pytest.fixture
def dialogues(
    shared_storage: Path, project: Project, owner: User, tmp_path: Path, tiny_folder: Path
) -> Dataset:
    return sample_dialogues(project, owner, tmp_path / "uploads", fractions=(0.8, 0.1, 0.1))


@pytest.fixture
def chat_model(tiny_folder: Path, tmp_path: Path) -> CatalogModel:
    """The tiny model with a chat template, added from a folder as a person would."""
    folder = tmp_path / "tiny-chat"
    shutil.copytree(tiny_folder, folder)
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["chat_template"] = CHAT_TEMPLATE
    config_path.write_text(json.dumps(config), encoding="utf-8")
    return cast(
        CatalogModel,
        CatalogModelFactory(
            slug="tiny-chat", name="Tiny chat model", source="local", location=str(folder)
        ),
    )


def run_trial(page: Page, *, shots: int) -> int:
    expect(page.get_by_role("heading", name="Prompt engineering")).to_be_visible()
    page.select_option("#id_base_model", "tiny-chat")
    page.select_option("#id_template", label="Chat shots v1")
    page.fill("#id_n_rows", str(ROWS))
    page.fill("#id_shots", str(shots))
    page.fill("#id_max_new_tokens", "8")
    if shots:
        expect(page.get_by_test_id("preview")).to_contain_text("as earlier chat turns")
        expect(page.get_by_test_id("final-prompt")).to_contain_text("<|assistant|>")
    page.get_by_test_id("run-trial").click()
    page.wait_for_url(re.compile(r"/trials/\d+/$"))
    expect(page.locator("#trial-live")).to_have_attribute(
        "data-status", "succeeded", timeout=JOB_TIMEOUT_MS
    )
    match = re.search(r"/trials/(\d+)/$", page.url)
    assert match
    return int(match.group(1))


def test_a_chat_turn_three_shot_trial_shows_its_change_against_zero_shot(
    page: Page,
    context: BrowserContext,
    live_server: LiveServer,
    live_worker: WorkerProcess,
    project: Project,
    owner: User,
    chat_model: CatalogModel,
    dialogues: Dataset,
) -> None:
    template_create(project=project, user=owner, name="Chat shots", fields=FIELDS)
    base = live_server.url
    log_in(context, base, owner)
    page.goto(f"{base}/p/{project.slug}/adapt/prompt/")
    zero_shot = run_trial(page, shots=0)
    page.goto(f"{base}/p/{project.slug}/adapt/prompt/")
    three_shot = run_trial(page, shots=3)

    page.goto(f"{base}/p/{project.slug}/trials/")
    row = page.locator(f"tr[data-trial='{three_shot}']")
    expect(row.get_by_test_id("vs-zero")).to_have_text(re.compile(r"^[+\u2212±]\d+\.\d ROUGE-1$"))
    expect(page.locator(f"tr[data-trial='{zero_shot}']").get_by_test_id("vs-zero")).to_have_text(
        "zero-shot"
    )
    expect(page.get_by_test_id("speed-definitions")).to_contain_text("Rows/s")
    page.screenshot(path="/tmp/pw_trial_vs_zero.png", full_page=True)

    job = Job.objects.get(id=three_shot)
    assert job.status == JobStatus.SUCCEEDED and job.params["shots"] == 3
    assert job.params["template"]["shot_style"] == "chat"
    prompt = TrialExample.objects.filter(job=job).values_list("prompt", flat=True)[0]
    # Three shots as user/assistant turns, the row as the last user turn.
    assert prompt.count("<|user|>") == 4 and prompt.count("<|assistant|>") == 4
