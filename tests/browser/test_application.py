"""The application stage in a real browser: build an application on a knowledge index,
ask it in the playground and watch the passages, the prompt and the answer stream in
from the serving worker; then see the checklist read what is set up. Screenshots at 1400
and 390 px go to test-artifacts/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import BrowserContext, Page, expect
from pytest_django.live_server_helper import LiveServer

from lifecycle_app.models import ApplicationVersion, CatalogModel, KnowledgeIndex, Project
from tests.browser.conftest import ARTIFACTS, log_in
from tests.integration.app_data import build_knowledge_index
from tests.integration.conftest import WorkerProcess

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def knowledge_index(
    live_worker: WorkerProcess,
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    tiny_folder: Path,
    settings: Any,
    tmp_path: Path,
) -> KnowledgeIndex:
    # Documents go where the worker reads them: its own var/ folder.
    settings.VAR_DIR = live_worker.log_path.parent / "var"
    return build_knowledge_index(project, owner, tiny_model, tmp_path / "docs")


def shoot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    for width in (1400, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(ARTIFACTS / f"{name}-{width}.png"), full_page=True)
    page.set_viewport_size({"width": 1400, "height": 900})


def test_build_an_app_and_ask_it_with_a_streamed_answer(
    page: Page,
    context: BrowserContext,
    live_server: LiveServer,
    live_worker: WorkerProcess,
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    tiny_folder: Path,
    knowledge_index: KnowledgeIndex,
) -> None:
    base = live_server.url
    log_in(context, base, owner)
    page.set_viewport_size({"width": 1400, "height": 900})
    page.goto(f"{base}/p/{project.slug}/apps/")
    expect(page.get_by_role("heading", name="Applications", exact=True)).to_be_visible()
    expect(page.get_by_test_id("index-status")).to_contain_text("Knowledge index ready")

    form = page.get_by_test_id("app-form")
    form.locator("#id_name").fill("Office helper")
    form.locator("#id_model").select_option(f"base:{tiny_model.slug}")
    form.locator("#id_retrieval").select_option("hybrid")
    form.locator("#id_top_k").fill("2")
    form.locator("#id_max_new_tokens").fill("24")
    form.get_by_role("button", name="Create application").click()
    expect(page.get_by_test_id("versions")).to_contain_text("v1")
    version = ApplicationVersion.objects.get()
    assert (version.retrieval, version.top_k) == ("hybrid", 2)
    shoot(page, "app-detail")

    page.get_by_role("link", name="Ask", exact=True).first.click()
    expect(page.get_by_role("heading", name="App playground")).to_be_visible()
    page.fill("#id_question", "When is lunch served?")
    deltas = page.evaluate_handle("() => { window.__texts = []; return true; }")
    assert deltas
    # Record each state of the answer box as it changes: a streamed answer passes through
    # several partial texts before the final one.
    page.evaluate(
        """() => new MutationObserver(() => window.__texts.push(
             document.getElementById('app-answer').textContent))
           .observe(document.getElementById('app-answer'),
                    {childList: true, characterData: true, subtree: true})"""
    )
    page.get_by_test_id("ask").click()

    hits = page.get_by_test_id("hits").locator("li")
    expect(hits.first).to_contain_text("lunch.md", timeout=120_000)
    expect(hits).to_have_count(2)
    expect(hits.first).to_contain_text("bm25")
    expect(hits.first).to_contain_text("dense")
    expect(page.get_by_test_id("prompt")).to_contain_text("When is lunch served?")
    expect(page.locator("#app-usage")).to_contain_text("answer tokens", timeout=120_000)
    answer = page.get_by_test_id("answer").inner_text()
    assert answer.strip()
    texts = page.evaluate("() => window.__texts")
    partial = [t for t in texts if t and t != answer]
    assert len(partial) >= 2, texts  # it streamed in, piece by piece
    shoot(page, "app-playground")

    page.goto(f"{base}/p/{project.slug}/integrate/app/")
    expect(page.get_by_test_id("evidence-retrieval")).to_contain_text("Knowledge index")
    expect(page.get_by_test_id("evidence-reasoning")).to_contain_text("None 1")
    expect(page.get_by_test_id("serving-monitoring")).to_be_visible()
    shoot(page, "app-checklist")
    page.goto(f"{base}/p/{project.slug}/apps/")
    shoot(page, "app-list")
