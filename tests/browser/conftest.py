"""Headless Chromium through Playwright's sync API, against pytest-django's live_server.

The Celery worker fixtures come from tests/integration/conftest.py; its
`shared_celery_worker` hands out the same process when both folders run in one session.
Only the walkthrough needs the worker (and so Redis and PostgreSQL); the other tests run
wherever Chromium is. A failing test leaves a screenshot and the page's HTML in
test-artifacts/, and the worker's log in its report.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from tests.conftest import CHROMIUM, require_chromium, require_redis_and_postgres
from tests.integration.conftest import (
    REPORTS,
    celery_worker_process,
    live_worker,
    pytest_runtest_makereport,
    shared_storage,
)

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 10_000

# Re-exported so pytest registers them for this folder too: the worker fixtures (the
# session one reuses a running worker) and the hook that adds the worker log to failures.
__all__ = ["celery_worker_process", "live_worker", "pytest_runtest_makereport", "shared_storage"]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    require_chromium()
    if "live_worker" in getattr(item, "fixturenames", ()):
        require_redis_and_postgres()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """Module-scoped: while it lives, an event loop runs in this thread, which would change
    how every later test in the session behaves (asyncio.run fails, for one)."""
    with pytest.MonkeyPatch.context() as patch:
        # The test's own ORM calls would otherwise be refused as made "from an async
        # context" while Playwright's loop runs.
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as pw:
            yield pw


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext, request: pytest.FixtureRequest) -> Iterator[Page]:
    page = context.new_page()
    yield page
    reports = request.node.stash.get(REPORTS, {})
    if any(report.failed for report in reports.values()):
        ARTIFACTS.mkdir(exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        (ARTIFACTS / f"{name}.html").write_text(page.content())


def log_in(context: BrowserContext, base_url: str, user: User) -> None:
    """Give the browser a session for `user` without going through the login form."""
    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": base_url}])
