"""Rating pairs in a real browser with the keyboard only: two teammates rate the same rows
(1 / 2 / arrows / T / B), the counter moves without a page load, the round page shows
their agreement, and a preference set is built from the ratings."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Browser, BrowserContext, Page, expect
from pytest_django.live_server_helper import LiveServer

from lifecycle_app.models import (
    CatalogModel,
    FeedbackRound,
    Membership,
    PreferenceSet,
    Project,
    Rating,
    Role,
)
from lifecycle_app.stages.align import agreement as feedback
from lifecycle_app.stages.align import services
from tests.browser.conftest import log_in
from tests.unit.test_feedback import make_trial

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ROWS = 6


@pytest.fixture
def rnd(project: Project, owner: User, teammate: User, tiny_model: CatalogModel) -> FeedbackRound:
    Membership.objects.filter(project=project, user=teammate).update(role=Role.EDITOR)
    a = make_trial(project, owner, tiny_model, {n: f"Short answer {n}." for n in range(ROWS)})
    b = make_trial(
        project, owner, tiny_model, {n: f"Another reply number {n}." for n in range(ROWS)}
    )
    return services.round_create(
        project=project, user=owner, name="Tone check", trial_a=a, trial_b=b, max_items=ROWS
    )


def rate_with_keys(page: Page, keys: list[str]) -> None:
    progress = page.get_by_test_id("rate-progress")
    for done, key in enumerate(keys):
        expect(progress).to_contain_text(f"{done} of {ROWS}")
        page.keyboard.press(key)
    expect(progress).to_contain_text(f"{ROWS} of {ROWS} rated by you · all done")


def test_two_teammates_rate_with_the_keyboard_and_see_their_agreement(
    browser: Browser,
    context: BrowserContext,
    page: Page,
    live_server: LiveServer,
    project: Project,
    owner: User,
    teammate: User,
    rnd: FeedbackRound,
) -> None:
    base = live_server.url
    rate_url = f"{base}/p/{project.slug}/feedback/rounds/{rnd.id}/rate/"
    log_in(context, base, owner)
    page.goto(rate_url)
    page.evaluate("window.__marker = 'same page'")
    # A comment typed in the box is text, not shortcuts ("b" and "t" in it rate nothing).
    page.keyboard.press("c")
    page.keyboard.type("better tone")
    page.keyboard.press("Escape")
    page.screenshot(path="/tmp/pw_rate.png", full_page=True)
    rate_with_keys(page, ["1", "ArrowRight", "t", "b", "ArrowLeft", "2"])
    assert page.evaluate("window.__marker") == "same page"  # htmx swaps, no reloads

    other = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        log_in(other, base, teammate)
        second = other.new_page()
        second.goto(rate_url)
        rate_with_keys(second, ["1", "ArrowRight", "t", "2", "ArrowLeft", "2"])
    finally:
        other.close()

    # What was stored: the pressed side, mapped back to A/B for each rater's layout.
    items = list(rnd.items.order_by("index"))
    for user, keys in ((owner, "1R tb L2"), (teammate, "1Rt2L2")):
        sides = [k for k in keys if k != " "]
        for item, key in zip(items, sides, strict=True):
            choice = Rating.objects.get(item=item, rater=user).choice
            if key in "tb":
                assert choice == {"t": "tie", "b": "both_bad"}[key]
            else:
                left = key in "1L"
                assert choice == ("a" if left == feedback.a_on_left(item.id, user.id) else "b")
    first = Rating.objects.get(item=items[0], rater=owner)
    assert first.comment == "better tone"

    page.goto(f"{base}/p/{project.slug}/feedback/rounds/{rnd.id}/")
    agreement = page.get_by_test_id("agreement")
    expect(agreement).to_contain_text(f"on the {ROWS} rows rated by two or more people")
    expect(agreement).to_contain_text("alice & bob")
    page.screenshot(path="/tmp/pw_round.png", full_page=True)
    page.get_by_test_id("build-set").click()
    expect(page.get_by_test_id("pairs")).to_be_visible()
    pset = PreferenceSet.objects.get(project=project)
    expect(page.get_by_test_id("pairs").locator("tbody tr")).to_have_count(pset.pairs.count())
    page.screenshot(path="/tmp/pw_prefset.png", full_page=True)
