"""Where the project's model is a plain (non-chat) model, the suggested template writes its
shots inline and the page says why; a chat model gets chat-turn shots (issue 19)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import cast

from django.contrib.auth.models import User
from django.urls import reverse

from lifecycle_app.catalog.models import CatalogModel
from lifecycle_app.projects.models import Project, StageKey
from lifecycle_app.projects.services import stage_step_save
from lifecycle_app.projects.steps import StepSlug
from tests.factories import CatalogModelFactory

from .test_prompts import CHAT_TEMPLATE
from .test_views_trials import client_for, storage  # noqa: F401


def pick(project: Project, model: CatalogModel) -> None:
    stage_step_save(
        project=project,
        stage_key=StageKey.SELECT,
        step_slug=StepSlug.MODEL,
        answers={"base_model": model.slug},
    )


def test_a_plain_model_gets_inline_shots_and_the_reason(
    project: Project, owner: User, tiny_model: CatalogModel
) -> None:
    pick(project, tiny_model)  # the tiny model has no chat template

    response = client_for(owner).get(reverse("template_new", args=[project.slug]))

    initial = response.context["form"].initial
    assert initial["shot_style"] == "inline" and initial["use_chat_template"] is False
    page = response.content.decode()
    assert 'data-testid="plain-model-note"' in page
    assert "Tiny test model has no chat template" in page
    assert "writes its shots inline" in page


def test_a_chat_model_gets_chat_turn_shots(
    project: Project, owner: User, tiny_folder: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "tiny-chat"
    shutil.copytree(tiny_folder, folder)
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    config["chat_template"] = CHAT_TEMPLATE
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    chat = cast(
        CatalogModel,
        CatalogModelFactory(slug="tiny-chat", name="Chat", source="local", location=str(folder)),
    )
    pick(project, chat)

    response = client_for(owner).get(reverse("template_new", args=[project.slug]))

    assert response.context["form"].initial["shot_style"] == "chat"
    assert 'data-testid="plain-model-note"' not in response.content.decode()
