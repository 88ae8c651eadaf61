"""Shared fixtures: three users (owner, teammate, outsider), a project, the tiny model.

Service checks: tests that need Redis/PostgreSQL (`integration`) or Chromium (`browser`)
skip with a reason when those are missing, except in CI (LIFECYCLE_REQUIRE_ALL=true),
where a missing service fails the run instead.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlparse

import pytest
from django.contrib.auth.models import User
from django.test.utils import override_settings

from lifecycle_app.models import CatalogModel, Membership, Project, Role
from tests.factories import CatalogModelFactory, UserFactory, make_project

REQUIRE_ALL = os.environ.get("LIFECYCLE_REQUIRE_ALL", "").lower() in {"1", "true", "yes"}
CHROMIUM = "/usr/bin/chromium"


def missing(reason: str) -> None:
    """Skip the test, or fail it where every service must be present (CI)."""
    if REQUIRE_ALL:
        pytest.fail(f"{reason} (LIFECYCLE_REQUIRE_ALL is set, so this is an error)")
    pytest.skip(reason)


def _reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or default_port), 1
        ):
            return True
    except OSError:
        return False


def require_redis_and_postgres() -> None:
    db_url = os.environ.get("DATABASE_URL", "")
    redis_url = os.environ.get("REDIS_URL", "")
    if not db_url.startswith(("postgres://", "postgresql://")):
        missing("needs DATABASE_URL pointing at PostgreSQL")
    if not redis_url:
        missing("needs REDIS_URL pointing at Redis")
    if not _reachable(db_url, 5432):
        missing(f"PostgreSQL at {db_url} is not reachable")
    if not _reachable(redis_url, 6379):
        missing(f"Redis at {redis_url} is not reachable")


def require_chromium() -> None:
    if not (Path(CHROMIUM).exists() or shutil.which("chromium")):
        missing("needs Debian's chromium at /usr/bin/chromium")


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    # PBKDF2 at production strength costs ~0.3 s per user; tests create many users.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="session", autouse=True)
def _plain_http() -> Iterator[None]:
    """Tests talk plain HTTP (the test client, live_server): production's HTTPS redirect
    and secure-only cookies are off here; tests/unit/test_security.py checks them.

    Session-scoped, so it is in force before live_server builds its handler:
    SecurityMiddleware reads SECURE_SSL_REDIRECT once, when it is created.
    """
    with override_settings(
        SECURE_SSL_REDIRECT=False, SESSION_COOKIE_SECURE=False, CSRF_COOKIE_SECURE=False
    ):
        yield


@pytest.fixture
def owner(db: None) -> User:
    return cast(User, UserFactory(username="alice"))


@pytest.fixture
def teammate(db: None) -> User:
    return cast(User, UserFactory(username="bob"))


@pytest.fixture
def outsider(db: None) -> User:
    return cast(User, UserFactory(username="charlie"))


@pytest.fixture
def tiny_model(db: None) -> CatalogModel:
    return cast(CatalogModel, CatalogModelFactory())


@pytest.fixture(scope="session")
def tiny_folder() -> Path:
    """The tiny model's folder under MODELS_DIR (built once if missing), where the web
    side's prompt kit and the worker both look for it."""
    from django.conf import settings

    from workers.ml import bundled

    return bundled.build_tiny(Path(settings.MODELS_DIR) / bundled.TINY_DIRNAME)


@pytest.fixture
def project(owner: User, teammate: User) -> Project:
    project = make_project(owner)
    Membership.objects.create(project=project, user=teammate, role=Role.VIEWER)
    return project


@pytest.fixture(autouse=True)
def _test_models_offered(settings: Any) -> None:
    # Pickers hide the random-weight tiny model outside tests and development
    # (CatalogModelQuerySet.pickable); the tests run everything on it.
    settings.LIFECYCLE_SHOW_TEST_MODELS = True
