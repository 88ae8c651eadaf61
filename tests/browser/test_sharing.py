"""Teams and sharing in a real browser: the owner invites a teammate, who logs in (in a
second browser context) and sees the project; the owner creates a share link that a third,
anonymous context opens and reads, with no controls."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Browser, BrowserContext, Page, expect
from pytest_django.live_server_helper import LiveServer

from lifecycle_app.models import GenerationOutput, JobStatus, Membership, Role, ShareLink
from tests.browser.conftest import TIMEOUT_MS, log_in
from tests.factories import PASSWORD, JobFactory, make_project

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _new_context(browser: Browser) -> BrowserContext:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    return context


def test_an_owner_invites_a_teammate_and_shares_a_read_only_link(
    page: Page,
    context: BrowserContext,
    browser: Browser,
    live_server: LiveServer,
    owner: User,
    teammate: User,
    tiny_model: object,
) -> None:
    base = live_server.url
    project = make_project(owner, "Ticket summaries")
    job = JobFactory.create(
        project=project, created_by=owner, base_model=tiny_model, status=JobStatus.SUCCEEDED
    )
    GenerationOutput.objects.create(job=job, prompt="Hi", text="Printer jammed.")

    # The owner invites bob as an editor from the members page.
    log_in(context, base, owner)
    page.goto(f"{base}/p/{project.slug}/")
    page.get_by_role("link", name="Members and sharing →").first.click()
    expect(page.get_by_role("heading", name="Members and sharing")).to_be_visible()
    page.fill("#id_identifier", "bob")
    page.select_option("#id_role", "editor")
    page.get_by_role("button", name="Invite").click()
    expect(page.locator(".messages")).to_contain_text("bob is now editor")
    expect(page.locator("tr[data-member=bob]")).to_be_visible()
    assert Membership.objects.get(project=project, user=teammate).role == Role.EDITOR

    # Bob logs in through the login form in a second context and sees the project.
    bob_context = _new_context(browser)
    try:
        bob = bob_context.new_page()
        bob.goto(f"{base}/accounts/login/")
        bob.fill("#id_username", "bob")
        bob.fill("#id_password", PASSWORD)
        bob.get_by_role("button", name="Log in").click()
        expect(bob.get_by_role("heading", name="Your projects")).to_be_visible()
        bob.get_by_role("link", name="Ticket summaries").click()
        expect(bob.get_by_role("heading", name="Ticket summaries", exact=True)).to_be_visible()
        expect(bob.get_by_text("You are editor of this project.")).to_be_visible()
    finally:
        bob_context.close()

    # The owner creates a share link and copies it from the page.
    page.fill("#id_label", "For the review board")
    page.select_option("#id_lifetime", "30d")
    page.get_by_role("button", name="Create share link").click()
    share_url = page.get_by_test_id("share-url").input_value()
    link = ShareLink.objects.get(project=project)
    assert share_url == f"{base}/s/{link.token}/"

    # A third, anonymous context opens it: the project, read-only, with no controls.
    anon_context = _new_context(browser)
    try:
        anon = anon_context.new_page()
        anon.goto(share_url)
        expect(anon.get_by_role("heading", name="Ticket summaries", exact=True)).to_be_visible()
        expect(anon.get_by_test_id("share-banner")).to_contain_text("Read-only view")
        expect(anon.locator("form")).to_have_count(0)
        expect(anon.locator("button")).to_have_count(0)
        expect(anon.get_by_role("link", name="Datasets →")).to_have_count(0)

        # A wizard step opens (htmx swap) with its fields disabled.
        anon.get_by_role("link", name="Define the use case").first.click()
        expect(anon.get_by_role("heading", name="Define the use case")).to_be_visible()
        expect(anon.locator("#id_use_case")).to_be_disabled()
        expect(anon.get_by_role("button", name="Save and continue")).to_have_count(0)
        assert anon.url.startswith(f"{base}/s/{link.token}/")

        # The job dashboard and the job page, also read-only.
        anon.get_by_role("link", name="Jobs for this project →").click()
        expect(anon.locator(f"tr[data-job='{job.id}']")).to_be_visible()
        anon.get_by_role("link", name=f"#{job.id}").click()
        expect(anon.get_by_test_id("generated-text")).to_have_text("Printer jammed.")
        expect(anon.get_by_role("button", name="Cancel")).to_have_count(0)

        # Revoked: the same page is gone.
        link.revoked_at = link.created_at
        link.save(update_fields=["revoked_at"])
        response = anon.goto(share_url)
        assert response is not None and response.status == 404
    finally:
        anon_context.close()
