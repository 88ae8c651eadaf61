"""The compute planner step (select/plan): a live plan on GET, errors, saving, access."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from lifecycle_app.models import CatalogModel, Project, Stage, StageKey, StepStatus
from lifecycle_app.projects.services import stage_step_save
from lifecycle_app.templatetags.lifecycle import params as params_filter
from tests.factories import CatalogModelFactory
from workers.ml.planner.shape import ModelShape, lora_trainable_params

HTMX = {"HX-Request": "true"}
TOTAL = re.compile(r'data-testid="plan-total">([0-9.]+) GB<')


# Nothing reaches a broker; tests that check enqueueing take `enqueued` (tests/unit/conftest.py).
pytestmark = pytest.mark.usefixtures("enqueued")


@pytest.fixture
def client(owner: User) -> Client:
    client = Client()
    client.force_login(owner)
    return client


@pytest.fixture
def picked(project: Project, tiny_model: CatalogModel) -> CatalogModel:
    """The project picked the tiny model in select/model; another planned model exists."""
    other = CatalogModelFactory(slug="other", name="Other planned model", is_test_model=False)
    assert other.shape
    stage_step_save(
        project=project,
        stage_key=StageKey.SELECT,
        step_slug="model",
        answers={"base_model": tiny_model.slug},
    )
    return tiny_model


def plan_url(project: Project) -> str:
    return reverse("wizard_step", args=[project.slug, "select", "plan"])


def plan_params(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "base_model": "tiny",
        "method": "lora",
        "dtype": "fp32",
        "lora_r": "8",
        "lora_targets": ["q_proj", "v_proj"],
        "num_virtual_tokens": "20",
        "batch_size": "4",
        "seq_len": "256",
        "optimizer": "adamw",
        "memory_gb": "24",
        "accelerator": "h100",
        "n_devices": "1",
        "efficiency": "0.4",
    }
    data.update(overrides)
    return data


def total_gb(content: str) -> float:
    match = TOTAL.search(content)
    assert match, "no plan total on the page"
    return float(match.group(1))


def test_a_plain_get_plans_the_projects_model_at_once(
    client: Client, project: Project, picked: CatalogModel
) -> None:
    response = client.get(plan_url(project))

    content = response.content.decode()
    assert response.status_code == 200
    assert "<html" in content
    assert response.context["planned_model"] == picked
    assert f"{picked.name}: " in content
    assert "Fits in 24 GB." in content
    assert total_gb(content) >= 0
    assert response.context["plan_total_gb"] > 0


def test_full_fine_tuning_needs_more_memory_than_lora(
    client: Client, project: Project, picked: CatalogModel
) -> None:
    lora = client.get(plan_url(project), plan_params(method="lora"))
    full = client.get(plan_url(project), plan_params(method="full"))

    assert lora.status_code == full.status_code == 200
    lora_total, full_total = lora.context["plan_total_gb"], full.context["plan_total_gb"]
    assert full_total > lora_total
    assert lora.context["plan"].total != full.context["plan"].total
    # The page shows the same numbers (two decimals).
    assert total_gb(lora.content.decode()) == pytest.approx(lora_total, abs=0.006)
    assert total_gb(full.content.decode()) == pytest.approx(full_total, abs=0.006)


def test_the_trainable_parameters_of_lora_match_the_planner(
    client: Client, project: Project, picked: CatalogModel
) -> None:
    response = client.get(plan_url(project), plan_params(method="lora", lora_r="8"))

    expected = lora_trainable_params(ModelShape.from_json(picked.shape), 8, ("q_proj", "v_proj"))
    assert expected == 3584  # 8 x (64+64) x 2 layers + 8 x (64+32) x 2 layers
    assert response.context["plan"].trainable_params == expected
    assert f"{params_filter(expected)} trainable parameters" in response.content.decode()


def test_too_little_memory_says_it_does_not_fit_and_lists_advice(
    client: Client, project: Project, picked: CatalogModel
) -> None:
    response = client.get(plan_url(project), plan_params(method="full", memory_gb="0.1"))

    content = response.content.decode()
    assert response.status_code == 200
    assert "Does not fit in 0.1 GB." in content
    assert response.context["fits"] is False
    advice = response.context["advice"]
    assert advice
    assert "What to change" in content
    for line in advice:
        assert f"<li>{escape(line)}</li>" in content


def test_an_htmx_get_answers_with_the_fragment_only(
    client: Client, project: Project, picked: CatalogModel
) -> None:
    response = client.get(plan_url(project), plan_params(method="full"), headers=HTMX)

    content = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in content
    assert content.lstrip().startswith('<div id="wizard"')
    assert 'id="plan"' in content
    assert 'data-testid="verdict"' in content
    assert total_gb(content) > 0


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"batch_size": "0"}, "batch_size", "greater than or equal to 1"),
        ({"method": "lora", "lora_targets": []}, "lora_targets", "Pick at least one module"),
        (
            {"method": "full", "dtype": "int8"},
            "dtype",
            "INT8 weights cannot be fully fine-tuned",
        ),
    ],
)
def test_invalid_settings_show_errors_and_no_plan(
    client: Client,
    project: Project,
    picked: CatalogModel,
    overrides: dict[str, Any],
    field: str,
    message: str,
) -> None:
    response = client.get(plan_url(project), plan_params(**overrides))

    content = response.content.decode()
    assert response.status_code == 200
    assert field in response.context["form"].errors
    assert message in content
    assert "plan" not in response.context or response.context.get("plan") is None
    assert 'data-testid="plan-total"' not in content
    assert 'data-testid="verdict"' not in content
    assert "Fix the highlighted fields to see the plan." in content


def test_a_post_saves_the_plan_and_moves_on_to_prompting(
    client: Client, project: Project, picked: CatalogModel
) -> None:
    response = client.post(plan_url(project), plan_params(method="full", memory_gb="48"))

    assert response.status_code == 302
    assert response["Location"] == reverse("wizard_step", args=[project.slug, "adapt", "prompt"])
    state = Stage.objects.get(project=project, key=StageKey.SELECT).step("plan")
    assert state["status"] == StepStatus.COMPLETE
    answers = state["answers"]
    assert answers["base_model"] == picked.slug
    assert answers["method"] == "full"
    assert answers["memory_gb"] == 48
    assert answers["lora_targets"] == ["q_proj", "v_proj"]


def test_an_invalid_post_saves_nothing(
    client: Client, project: Project, picked: CatalogModel
) -> None:
    response = client.post(plan_url(project), plan_params(batch_size="0"))

    assert response.status_code == 200
    assert Stage.objects.get(project=project, key=StageKey.SELECT).step("plan") == {}


def test_an_outsider_gets_404_for_get_and_post(
    project: Project, picked: CatalogModel, outsider: User
) -> None:
    client = Client()
    client.force_login(outsider)

    assert client.get(plan_url(project)).status_code == 404
    assert client.get(plan_url(project), plan_params()).status_code == 404
    assert client.post(plan_url(project), plan_params()).status_code == 404
    assert Stage.objects.get(project=project, key=StageKey.SELECT).step("plan") == {}


def test_a_viewer_sees_the_plan_but_cannot_save_it(
    project: Project, picked: CatalogModel, teammate: User
) -> None:
    client = Client()
    client.force_login(teammate)

    response = client.get(plan_url(project))
    assert response.status_code == 200
    assert 'data-testid="verdict"' in response.content.decode()
    assert "Save this plan and continue" not in response.content.decode()
    assert client.post(plan_url(project), plan_params()).status_code == 403
    assert Stage.objects.get(project=project, key=StageKey.SELECT).step("plan") == {}
