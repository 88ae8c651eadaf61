"""Security baseline: `check --deploy` passes in production, HTTPS-only there, CSRF on htmx."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from lifecycle_app.models import Project, StageKey
from lifecycle_app.teams.services import share_link_create
from tests.factories import PASSWORD, scope_data

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": "studio.example.com",
}


def _run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "DEBUG", "SECRET_KEY", "ALLOWED_HOSTS"}
        and not k.startswith(("SECURE_", "DJANGO_"))
    }
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**clean, "LIFECYCLE_VAR_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_passes_with_production_settings(tmp_path: Path) -> None:
    result = _run(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"], tmp_path, **PRODUCTION
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_fails_when_production_drops_https(tmp_path: Path) -> None:
    # The test above means something: weaken one setting and the check catches it.
    result = _run(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        tmp_path,
        **PRODUCTION,
        SECURE_SSL_REDIRECT="false",
    )

    assert result.returncode != 0
    assert "security.W008" in result.stdout + result.stderr


PRINT_SETTINGS = (
    "import django, json; django.setup(); from django.conf import settings as s; "
    "print(json.dumps({k: getattr(s, k, None) for k in ["
    "'SECURE_SSL_REDIRECT', 'SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', "
    "'SECURE_HSTS_SECONDS', 'SECURE_PROXY_SSL_HEADER']}))"
)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            PRODUCTION,
            {
                "SECURE_SSL_REDIRECT": True,
                "SESSION_COOKIE_SECURE": True,
                "CSRF_COOKIE_SECURE": True,
                "SECURE_HSTS_SECONDS": 31_536_000,
                "SECURE_PROXY_SSL_HEADER": None,
            },
        ),
        (
            {"DEBUG": "true"},
            {
                "SECURE_SSL_REDIRECT": False,
                "SESSION_COOKIE_SECURE": False,
                "CSRF_COOKIE_SECURE": False,
                "SECURE_HSTS_SECONDS": 0,
                "SECURE_PROXY_SSL_HEADER": None,
            },
        ),
        (
            {**PRODUCTION, "SECURE_PROXY_SSL_HEADER": "true", "SECURE_HSTS_SECONDS": "3600"},
            {
                "SECURE_SSL_REDIRECT": True,
                "SESSION_COOKIE_SECURE": True,
                "CSRF_COOKIE_SECURE": True,
                "SECURE_HSTS_SECONDS": 3600,
                "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
            },
        ),
    ],
    ids=["production", "debug", "behind-a-proxy"],
)
def test_the_security_settings_follow_the_environment(
    env: dict[str, str], expected: dict[str, Any], tmp_path: Path
) -> None:
    result = _run(
        ["-c", PRINT_SETTINGS], tmp_path, DJANGO_SETTINGS_MODULE="lifecycle_app.settings", **env
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == expected


@pytest.fixture
def production(settings: Any) -> None:
    settings.SECURE_SSL_REDIRECT = True
    settings.SESSION_COOKIE_SECURE = True
    settings.CSRF_COOKIE_SECURE = True
    settings.SECURE_HSTS_SECONDS = 31_536_000


def test_production_redirects_plain_http_to_https(production: None, db: None) -> None:
    response = Client().get("/accounts/login/")

    assert response.status_code == 301
    assert response["Location"] == "https://testserver/accounts/login/"


def test_production_sends_the_security_headers_and_secure_cookies(
    production: None, owner: User
) -> None:
    client = Client()
    page = client.get("/accounts/login/", secure=True)
    response = client.post(
        "/accounts/login/", {"username": "alice", "password": PASSWORD}, secure=True
    )

    assert response.status_code == 302
    assert page["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    assert page["X-Content-Type-Options"] == "nosniff"
    assert page["X-Frame-Options"] == "DENY"
    assert page["Referrer-Policy"] == "same-origin"
    assert page["Cross-Origin-Opener-Policy"] == "same-origin"
    for name in ("sessionid", "csrftoken"):
        cookie = response.cookies.get(name) or page.cookies[name]
        assert cookie["secure"] is True, name
        assert cookie["httponly"] is True, name


@pytest.mark.parametrize(
    ("page", "upload", "field"),
    [("dataset_list", "dataset_upload", "file"), ("knowledge_base", "knowledge_upload", "file")],
)
def test_the_streamed_uploads_still_need_the_csrf_token(
    page: str, upload: str, field: str, project: Project, owner: User
) -> None:
    """The size-limited upload views are CSRF-exempt on the outside (the handler must be in
    place before anything reads the body) and CSRF-protected inside."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    token = _hx_csrf(client.get(reverse(page, args=[project.slug])).content.decode())
    url = reverse(upload, args=[project.slug])

    def body() -> dict[str, Any]:
        return {"name": "notes", field: SimpleUploadedFile("notes.txt", b"A short note.\n")}

    refused = client.post(url, body())
    accepted = client.post(url, body(), headers={"X-CSRFToken": token})

    assert refused.status_code == 403
    assert accepted.status_code != 403


def _hx_csrf(html: str) -> str:
    match = re.search(r"<body hx-headers='\{\"X-CSRFToken\": \"([^\"]+)\"\}'>", html)
    assert match, "base.html must hand htmx the CSRF token"
    return match.group(1)


def test_every_htmx_request_carries_the_csrf_token_and_needs_it(
    project: Project, owner: User
) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    url = reverse("wizard_step", args=[project.slug, StageKey.SCOPE, "use-case"])
    token = _hx_csrf(client.get(url).content.decode())

    refused = client.post(url, scope_data(), headers={"HX-Request": "true"})
    accepted = client.post(url, scope_data(), headers={"HX-Request": "true", "X-CSRFToken": token})

    assert refused.status_code == 403
    assert accepted.status_code == 200
    assert accepted["HX-Location"]


@pytest.mark.parametrize("page", ["project_detail", "members", "project_jobs", "share"])
def test_every_page_hands_htmx_the_csrf_token(page: str, project: Project, owner: User) -> None:
    client = Client()
    client.force_login(owner)
    if page == "share":
        link = share_link_create(project=project, actor=owner, lifetime=None)
        url = reverse("share_project", args=[link.token])
    else:
        url = reverse(page, args=[project.slug])

    assert _hx_csrf(client.get(url).content.decode())
