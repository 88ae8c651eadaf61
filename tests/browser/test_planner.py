"""The compute planner in a real browser: the plan follows the form through htmx, in place.

No worker is needed: the plan is arithmetic in the web process on the model's stored shape.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import BrowserContext, Page, expect
from pytest_django.live_server_helper import LiveServer

from lifecycle_app.models import CatalogModel, Project
from tests.browser.conftest import log_in
from tests.conftest import require_chromium

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _total(page: Page) -> float:
    """The plan's total in GB, to three decimals (the heading shows two)."""
    value = page.locator("#plan").get_attribute("data-total-gb")
    assert value, "the plan has no total"
    return float(value)


def _shown_total(page: Page) -> float:
    text = page.get_by_test_id("plan-total").inner_text().strip()
    assert text.endswith(" GB"), text
    return float(text.removesuffix(" GB"))


def test_the_plan_follows_the_method_and_the_memory_without_a_page_load(
    page: Page,
    context: BrowserContext,
    live_server: LiveServer,
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
) -> None:
    require_chromium()
    assert tiny_model.shape
    base = live_server.url
    log_in(context, base, owner)
    page.goto(f"{base}/p/{project.slug}/select/plan/")
    expect(page.get_by_role("heading", name="Plan compute and memory")).to_be_visible()
    page.evaluate("window.__marker = 1")

    page.select_option("#id_base_model", tiny_model.slug)
    page.select_option("#id_method", label="LoRA")
    expect(page.locator("#plan h2")).to_contain_text(f"{tiny_model.name}:")
    verdict = page.get_by_test_id("verdict")
    expect(verdict).to_have_text("Fits in 24 GB.")
    lora_total, lora_shown = _total(page), _shown_total(page)
    assert lora_total > 0
    assert lora_shown == pytest.approx(lora_total, abs=0.006)

    page.select_option("#id_method", label="Full fine-tuning")
    expect(page.locator("#plan")).not_to_have_attribute("data-total-gb", f"{lora_total:.3f}")
    full_total = _total(page)
    assert full_total > lora_total
    # The tiny model's totals differ by about 1 MB, which the two-decimal heading may hide.
    assert _shown_total(page) >= lora_shown
    expect(verdict).to_have_text("Fits in 24 GB.")

    # Memory between the two totals: full fine-tuning no longer fits, LoRA still does.
    between = round((lora_total + full_total) / 2, 4)
    assert lora_total < between < full_total
    page.fill("#id_memory_gb", str(between))
    expect(verdict).to_contain_text("Does not fit")
    expect(page.locator("#plan")).to_contain_text("What to change")

    page.select_option("#id_method", label="LoRA")
    expect(verdict).to_contain_text("Fits in")
    expect(verdict).not_to_contain_text("Does not fit")
    assert _total(page) == pytest.approx(lora_total)

    # Every update was an htmx swap (the URL follows the form), never a page load.
    assert page.evaluate("window.__marker") == 1
    assert "method=lora" in page.url
    assert f"memory_gb={between}" in page.url
    # The save form carries the settings shown, ready to post.
    save = page.locator("#save-plan")
    expect(save.locator("input[name=method]")).to_have_value("lora")
    expect(save.locator("input[name=memory_gb]")).to_have_value(str(between))
