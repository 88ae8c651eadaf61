"""Optimize and deploy in a real browser: export an int8 variant on a real worker, read
the trade-off table, deploy it, create a token and call the API with it, fill in the
integration checklist and see it on the project page.

The tiny model runs by default (seconds). With LIFECYCLE_BROWSER_BUNDLED=true the same
walk runs the bundled SmolLM2 on 20 sample test rows (minutes), which is what the
README's screenshot shows. Screenshots are written to test-artifacts/ either way.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from playwright.sync_api import BrowserContext, Page, expect
from pytest_django.live_server_helper import LiveServer

from lifecycle_app.models import (
    ApiToken,
    CatalogModel,
    Dataset,
    ModelVariant,
    Project,
)
from tests.browser.conftest import ARTIFACTS, log_in
from tests.integration.conftest import WorkerProcess
from tests.integration.sample_data import sample_dialogues

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

BUNDLED = os.environ.get("LIFECYCLE_BROWSER_BUNDLED", "").lower() in {"1", "true", "yes"}


@pytest.fixture
def dialogues(
    shared_storage: Path, project: Project, owner: User, tmp_path: Path, tiny_folder: Path
) -> Dataset:
    return sample_dialogues(project, owner, tmp_path / "uploads", fractions=(0.8, 0.1, 0.1))


def _model(tiny_model: CatalogModel) -> CatalogModel:
    if not BUNDLED:
        return tiny_model
    call_command("prepare_models", "--only", "bundled")
    return CatalogModel.objects.get(slug="smollm2-135m-instruct")


def test_export_measure_deploy_and_call_the_api(
    page: Page,
    context: BrowserContext,
    live_server: LiveServer,
    live_worker: WorkerProcess,
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    dialogues: Dataset,
) -> None:
    model = _model(tiny_model)
    rows, tokens = ("20", "32") if BUNDLED else ("6", "8")
    base = live_server.url
    log_in(context, base, owner)
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(f"{base}/p/{project.slug}/integrate/deploy/")

    expect(page.get_by_role("heading", name="Optimize and deploy")).to_be_visible()
    page.select_option("#id_base_model", model.slug)
    page.select_option("#id_dataset", str(dialogues.id))
    page.check("input[name=kind][value=int8]")
    page.fill("#id_eval_rows", rows)
    page.fill("#id_max_new_tokens", tokens)
    page.get_by_test_id("start-export").click()

    # The export job's card shows progress; the table row appears when it has measured.
    row = page.locator("table.tradeoff tr[data-kind=int8]")
    expect(row).to_be_visible(timeout=(600_000 if BUNDLED else 120_000))
    expect(page.locator(".job-status[data-status=succeeded]")).to_have_count(1)
    size = row.get_by_test_id("size").inner_text()
    speed = row.get_by_test_id("speed").inner_text()
    rouge = row.get_by_test_id("quality-rouge1").inner_text()
    assert " of " in size and "\u2212" in size, size  # "160.0 MB 30% of 513.2 MB (minus 70%)"
    assert "× parent" in speed, speed
    assert rouge.splitlines()[-1].strip()[0] in "+-", rouge  # absolute change vs parent
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "deploy-tradeoff.png"), full_page=True)

    row.get_by_test_id("deploy").click()
    expect(page.get_by_test_id("deployed-badge")).to_be_visible()
    expect(page.get_by_test_id("deployed")).to_be_visible()
    assert ModelVariant.objects.get().is_deployed

    page.fill("input[name=name]", "browser test")
    page.get_by_test_id("create-token").click()
    shown = page.get_by_test_id("new-token").locator("input")
    expect(shown).to_be_visible()
    raw = shown.input_value()
    assert raw.startswith(ApiToken.objects.get().prefix)
    page.screenshot(path=str(ARTIFACTS / "deploy-api.png"), full_page=True)

    response = page.request.post(
        f"{base}/api/projects/{project.slug}/generate",
        headers={"Authorization": f"Bearer {raw}"},
        data={"messages": [{"role": "user", "content": "Summarize: A: Lunch? B: Sure."}]},
        timeout=120_000,
    )
    assert response.status == 200, response.text()
    assert response.json()["object"] == "chat.completion"
    assert (
        page.request.post(
            f"{base}/api/projects/{project.slug}/generate", data={"prompt": "hi"}
        ).status
        == 401
    )

    page.goto(f"{base}/p/{project.slug}/integrate/app/")
    for key, status in [
        ("retrieval", "not_needed"),
        ("reasoning", "planned"),
        ("monitoring", "in_progress"),
        ("fallback", "planned"),
        ("infrastructure", "done"),
    ]:
        page.select_option(f"#id_{key}_status", status)
    page.fill("#id_monitoring_notes", "Log prompts and answers; weekly ROUGE on sampled traffic.")
    page.fill("#id_infrastructure_notes", "int8 on the CPU serving worker; p95 under 1 s.")
    page.get_by_test_id("save-checklist").click()
    # The last step: saving lands on the project page.
    checklist = page.get_by_test_id("integration-checklist")
    expect(checklist).to_contain_text("weekly ROUGE on sampled traffic")
    expect(checklist.locator("tr[data-item=infrastructure]")).to_contain_text("Done")
    expect(page.get_by_test_id("deployed-model")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "deploy-project.png"), full_page=True)
