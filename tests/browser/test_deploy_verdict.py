"""The trade-off table with every variant kind in a real browser: the verdict and its
rule, the recommended row, the dynamic-int8 warning, Deploy on an ONNX row."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import BrowserContext, Page, expect
from pytest_django.live_server_helper import LiveServer

from lifecycle_app.models import CatalogModel, ModelVariant, Project
from tests.browser.conftest import ARTIFACTS, log_in
from tests.unit.test_deploy_verdict import _scope, _table

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_verdict_recommends_a_variant_and_it_deploys(
    page: Page,
    context: BrowserContext,
    live_server: LiveServer,
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
) -> None:
    variants = _table(project, owner, tiny_model)
    _scope(project, success_metric="rouge_1", metric_target=0.2, max_latency_ms=2000)
    log_in(context, live_server.url, owner)
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.goto(f"{live_server.url}/p/{project.slug}/integrate/deploy/#tradeoff")

    expect(page.get_by_test_id("verdict")).to_contain_text("Deploy ONNX block-wise int8")
    expect(page.get_by_test_id("verdict-rule")).to_contain_text("2000 ms")
    onnx_row = page.locator(f"tr[data-variant='{variants['ort'].id}']")
    expect(onnx_row.get_by_test_id("recommended")).to_be_visible()
    warned = page.locator(f"tr[data-variant='{variants['dyn'].id}']")
    expect(warned.get_by_test_id("quality-warning")).to_contain_text("halves quality")
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#tradeoff").screenshot(path=str(ARTIFACTS / "deploy-verdict.png"))

    onnx_row.get_by_test_id("deploy").click()
    expect(onnx_row.get_by_test_id("deployed-badge")).to_be_visible()
    assert ModelVariant.objects.get(deployed_at__isnull=False) == variants["ort"]
