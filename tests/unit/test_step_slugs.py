"""The Integrate stage's steps are deploy and app (were optimize and augment): saved answers
move with migration 0012 and old links redirect."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django.test import Client
from django.urls import reverse

from lifecycle_app.projects.models import Project, Stage, StageKey
from lifecycle_app.teams.services import share_link_create

migration = importlib.import_module("lifecycle_app.migrations.0012_step_slugs")


@pytest.fixture
def client(owner) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(owner)
    return client


def test_the_migration_moves_saved_answers_to_the_new_slugs_and_back(project: Project) -> None:
    stage = Stage.objects.get(project=project, key=StageKey.INTEGRATE)
    stage.steps = {"optimize": {"status": "complete"}, "augment": {"answers": {"items": {}}}}
    stage.save()

    migration.rename(apps, None)
    stage.refresh_from_db()
    assert stage.steps == {"deploy": {"status": "complete"}, "app": {"answers": {"items": {}}}}

    migration.unrename(apps, None)
    stage.refresh_from_db()
    assert set(stage.steps) == {"optimize", "augment"}


@pytest.mark.parametrize(("old", "new"), [("optimize", "deploy"), ("augment", "app")])
def test_an_old_step_link_redirects_to_the_new_one(
    client: Client, project: Project, old: str, new: str
) -> None:
    response = client.get(f"/p/{project.slug}/integrate/{old}/")

    assert response.status_code == 301
    assert response["Location"] == reverse("wizard_step", args=[project.slug, "integrate", new])


def test_an_old_share_link_step_redirects_too(project: Project) -> None:
    token = share_link_create(project=project, actor=project.owner, lifetime=None).token

    response = Client().get(f"/s/{token}/integrate/optimize/")

    assert response.status_code == 301
    assert response["Location"].endswith(f"/s/{token}/integrate/deploy/")


def test_an_unknown_step_is_still_a_404(client: Client, project: Project) -> None:
    assert client.get(f"/p/{project.slug}/integrate/nonsense/").status_code == 404
