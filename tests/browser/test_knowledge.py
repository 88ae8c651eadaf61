"""The Knowledge base in a real browser: upload two sample documents (and see a refusal),
build the index on the real worker, watch it become ready, and check retrieval per
retriever in the search box."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import BrowserContext, Page, expect
from pytest_django.live_server_helper import LiveServer

import lifecycle_app
from lifecycle_app.models import CatalogModel, Project
from tests.browser.conftest import log_in
from tests.integration.conftest import WorkerProcess
from tests.tiny_embedder import build_tiny_embedder

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SAMPLE = Path(lifecycle_app.__file__).resolve().parent / "samples" / "knowledge"
INDEX_TIMEOUT_MS = 90_000


def shot(page: Page, tmp_path: Path, name: str) -> None:
    folder = Path(os.environ.get("LIFECYCLE_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"knowledge-{name}.png"), full_page=True)


def test_documents_are_uploaded_indexed_and_searched(
    page: Page,
    context: BrowserContext,
    live_server: LiveServer,
    live_worker: WorkerProcess,
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    settings: Any,
    tmp_path: Path,
) -> None:
    var = live_worker.log_path.parent / "var"
    settings.VAR_DIR = var
    texts = " ".join(p.read_text() for p in SAMPLE.glob("*.*"))
    settings.LIFECYCLE_EMBEDDER = str(build_tiny_embedder(var / "tiny-embedder-kb", texts))
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path)
    base = live_server.url
    log_in(context, base, owner)

    page.goto(f"{base}/p/{project.slug}/knowledge/")
    expect(page.get_by_role("heading", name="Knowledge base", exact=True)).to_be_visible()
    expect(page.get_by_test_id("empty-knowledge")).to_be_visible()
    shot(page, tmp_path, "empty")

    bad = tmp_path / "notes.txt"
    bad.write_bytes("Caf\u00e9 prices\n".encode("latin-1"))
    page.set_input_files("#id_file", str(bad))
    page.get_by_role("button", name="Upload", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text("is not valid UTF-8: byte 0xE9")
    shot(page, tmp_path, "refused")

    for name in ("returns-and-refunds.md", "kettle-troubleshooting.txt"):
        page.set_input_files("#id_file", str(SAMPLE / name))
        page.get_by_role("button", name="Upload", exact=True).click()
        expect(page.get_by_test_id("documents")).to_contain_text(name)

    page.select_option("#id_tokenizer_model", str(tiny_model.id))
    page.fill("#id_chunk_size", "48")
    page.fill("#id_chunk_overlap", "8")
    page.get_by_role("button", name="Build the index").click()
    expect(page.get_by_test_id("index-current")).to_contain_text("Ready", timeout=INDEX_TIMEOUT_MS)
    expect(page.get_by_test_id("index-current")).to_contain_text("of 2 documents")
    page.reload()
    shot(page, tmp_path, "ready")

    page.fill("#id_q", "what does error E1 on the kettle mean")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_test_id("hits-bm25")).to_contain_text("kettle-troubleshooting.txt")
    expect(page.get_by_test_id("hits-hybrid").locator(".hit").first).to_contain_text(
        "kettle-troubleshooting.txt"
    )
    expect(page.get_by_test_id("hits-dense")).to_contain_text("cosine")
    shot(page, tmp_path, "search")
