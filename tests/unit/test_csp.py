"""Every page carries the Content-Security-Policy, and templates give it nothing to refuse
(no inline scripts, no inline event handlers)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from lifecycle_app.models import Project
from lifecycle_app.teams.services import share_link_create

POLICY = [
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "style-src-attr 'unsafe-inline'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "object-src 'none'",
    "frame-ancestors 'none'",
    "base-uri 'self'",
    "form-action 'self'",
]


def assert_policy(header: str) -> None:
    directives = [d.strip() for d in header.split(";")]
    assert sorted(directives) == sorted(POLICY)
    assert "'unsafe-eval'" not in header and "script-src 'self' 'unsafe-inline'" not in header


@pytest.mark.parametrize(
    "page", ["login", "project_list", "project_detail", "wizard_step", "htmx_step", "share"]
)
def test_every_page_carries_the_content_security_policy(
    page: str, project: Project, owner: User
) -> None:
    client = Client()
    if page != "login":
        client.force_login(owner)
    headers: dict[str, str] = {}
    if page == "login":
        url = reverse("login")
    elif page == "project_list":
        url = reverse("project_list")
    elif page == "project_detail":
        url = reverse("project_detail", args=[project.slug])
    elif page == "share":
        token = share_link_create(project=project, actor=owner, lifetime=None).token
        url = reverse("share_step", args=[token, "adapt", "fine-tune"])
        client = Client()
    else:
        url = reverse("wizard_step", args=[project.slug, "select", "plan"])
        if page == "htmx_step":
            headers = {"HX-Request": "true"}
    response = client.get(url, headers=headers)
    assert response.status_code == 200
    assert_policy(response["Content-Security-Policy"])


TEMPLATES = Path(settings.BASE_DIR) / "templates"


def test_no_template_has_an_inline_script_or_event_handler() -> None:
    inline_script = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>", re.I)
    handler = re.compile(r"<[a-z][^>]*\son[a-z]+\s*=", re.I)
    found = [
        f"{path.relative_to(TEMPLATES)}: {match.group(0)[:80]}"
        for path in TEMPLATES.rglob("*.html")
        for pattern in (inline_script, handler)
        for match in pattern.finditer(path.read_text())
    ]
    assert found == []
