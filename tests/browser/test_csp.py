"""The Content-Security-Policy in a real browser: the project page, the plan step (an htmx
live form), the scorecard (Chart.js) and a share page load with no refusal in the console,
htmx still swaps (a sidebar click replaces #wizard without a page load) and the chart draws.
No worker is needed: the evaluation is made in the database."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import BrowserContext, ConsoleMessage, Page, expect
from pytest_django.live_server_helper import LiveServer

from lifecycle_app.models import CatalogModel, Project
from lifecycle_app.teams.services import share_link_create
from tests.browser.conftest import log_in
from tests.unit.test_views_evaluation import THREE, make_evaluation

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

REFUSALS = ("Content Security Policy", "Content-Security-Policy", "Refused to")


def _watch(page: Page) -> list[str]:
    seen: list[str] = []

    def record(message: ConsoleMessage) -> None:
        seen.append(f"{message.type}: {message.text}")

    page.on("console", record)
    page.on("pageerror", lambda error: seen.append(f"pageerror: {error}"))
    return seen


def _refusals(seen: list[str]) -> list[str]:
    return [line for line in seen if any(word in line for word in REFUSALS)]


def test_pages_work_under_the_policy_with_htmx_and_charts(
    page: Page,
    context: BrowserContext,
    live_server: LiveServer,
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
) -> None:
    make_evaluation(project, owner, THREE)
    base = live_server.url
    log_in(context, base, owner)
    seen = _watch(page)

    response = page.goto(f"{base}/p/{project.slug}/")
    assert response is not None
    assert "script-src 'self'" in response.headers["content-security-policy"]
    expect(page.locator("#wizard")).to_be_visible()
    page.evaluate("window.__marker = 1")

    # A sidebar click is an htmx swap of #wizard: the page itself is not reloaded.
    page.locator("nav.wizard-nav a[href$='/select/plan/']").click()
    expect(page.get_by_role("heading", name="Plan compute and memory")).to_be_visible()
    assert page.url.endswith("/select/plan/")
    assert page.evaluate("window.__marker") == 1

    # The plan follows its form through htmx.
    page.select_option("#id_base_model", tiny_model.slug)
    page.select_option("#id_method", label="LoRA")
    expect(page.locator("#plan h2")).to_contain_text(f"{tiny_model.name}:")
    assert page.evaluate("window.__marker") == 1

    # The scorecard draws its Chart.js chart from the json_script block.
    page.goto(f"{base}/p/{project.slug}/scorecard/")
    expect(page.get_by_test_id("scorecard")).to_be_visible()
    page.wait_for_function(
        "() => window.Chart && Chart.getChart(document.getElementById('scorecard-chart'))"
    )

    # The share link's URL field selects itself on click (a static script, no onfocus=).
    token = share_link_create(project=project, actor=owner, lifetime=None).token
    page.goto(f"{base}/p/{project.slug}/members/")
    url_field = page.get_by_test_id("share-url")
    url_field.click()
    assert (
        page.evaluate(
            "() => window.getSelection().toString() || "
            "document.activeElement.value.substring(document.activeElement.selectionStart, "
            "document.activeElement.selectionEnd)"
        )
        == url_field.input_value()
    )

    # A share page under the same policy.
    page.goto(f"{base}/s/{token}/scorecard/")
    expect(page.get_by_test_id("share-banner")).to_be_visible()
    page.wait_for_function(
        "() => window.Chart && Chart.getChart(document.getElementById('scorecard-chart'))"
    )

    assert _refusals(seen) == [], seen
