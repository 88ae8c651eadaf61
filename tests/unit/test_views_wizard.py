"""The project pages and the wizard steps: full pages, htmx fragments, stored answers, jobs."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from lifecycle_app.models import (
    CatalogModel,
    GenerationOutput,
    Job,
    JobKind,
    JobStatus,
    Membership,
    Project,
    Role,
    Stage,
    StageKey,
    StepStatus,
)
from tests.factories import make_project, prompt_data, scope_data

HTMX = {"HX-Request": "true"}  # request.META["HTTP_HX_REQUEST"] == "true"


# Nothing reaches a broker; tests that check enqueueing take `enqueued` (tests/unit/conftest.py).
pytestmark = pytest.mark.usefixtures("enqueued")


@pytest.fixture
def client(owner: User) -> Client:
    client = Client()
    client.force_login(owner)
    return client


def step_url(project: Project, stage: str, step: str) -> str:
    return reverse("wizard_step", args=[project.slug, stage, step])


def step_state(project: Project, stage: str, step: str) -> dict[str, Any]:
    return Stage.objects.get(project=project, key=stage).step(step)


# --- Project list and create ------------------------------------------------------


def test_it_shows_the_empty_state_to_a_user_without_projects(client: Client) -> None:
    response = client.get(reverse("project_list"))

    assert response.status_code == 200
    assert "No projects yet." in response.content.decode()


def test_it_lists_only_the_projects_the_user_belongs_to(
    project: Project, teammate: User, outsider: User
) -> None:
    make_project(outsider, name="Charlie's secret plan")
    client = Client()
    client.force_login(teammate)

    content = client.get(reverse("project_list")).content.decode()

    assert project.name in content
    assert "secret plan" not in content
    assert "No projects yet." not in content


def test_it_creates_a_project_with_an_owner_membership_and_four_stages(
    client: Client, owner: User
) -> None:
    response = client.post(
        reverse("project_list"), {"name": "  Ticket triage  ", "description": "Route tickets."}
    )

    project = Project.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("project_detail", args=[project.slug])
    assert project.name == "Ticket triage"
    assert project.slug == "ticket-triage"
    assert project.owner == owner
    membership = Membership.objects.get(project=project)
    assert (membership.user, membership.role) == (owner, Role.OWNER)
    assert sorted(project.stages.values_list("key", flat=True)) == sorted(StageKey.values)


def test_it_rejects_a_project_without_a_name(client: Client) -> None:
    response = client.post(reverse("project_list"), {"name": "   ", "description": ""})

    assert response.status_code == 200
    assert "This field is required." in response.content.decode()
    assert not Project.objects.exists()


# --- Project detail -----------------------------------------------------------------


def test_it_renders_the_project_overview_as_a_full_page(client: Client, project: Project) -> None:
    response = client.get(reverse("project_detail", args=[project.slug]))

    content = response.content.decode()
    assert response.status_code == 200
    assert "<html" in content
    assert 'id="wizard"' in content
    assert "Continue: Define the use case" in content
    assert "You are owner of this project." in content


def test_it_renders_only_the_overview_fragment_to_htmx(client: Client, project: Project) -> None:
    response = client.get(reverse("project_detail", args=[project.slug]), headers=HTMX)

    content = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in content
    assert content.lstrip().startswith('<div id="wizard"')
    assert "Continue: Define the use case" in content


# --- Scope ----------------------------------------------------------------------------


def test_it_stores_a_valid_scope_and_redirects_to_the_select_step(
    client: Client, project: Project
) -> None:
    response = client.post(step_url(project, "scope", "use-case"), scope_data())

    assert response.status_code == 302
    assert response["Location"] == step_url(project, "select", "model")
    state = step_state(project, StageKey.SCOPE, "use-case")
    assert state["status"] == StepStatus.COMPLETE
    answers = state["answers"]
    assert answers["task_type"] == "summarization"
    assert answers["metric_target"] == 0.4
    assert answers["max_cost_per_1k"] == "0.25"
    assert len(answers["examples"]) == 3
    assert answers["examples"][0] == {
        "input": "Ticket 0: the printer on floor 0 is jammed again.",
        "output": "Printer 0 jammed.",
    }


def test_it_answers_a_valid_htmx_scope_post_with_an_hx_location(
    client: Client, project: Project
) -> None:
    response = client.post(step_url(project, "scope", "use-case"), scope_data(), headers=HTMX)

    assert response.status_code == 200
    location = json.loads(response["HX-Location"])
    assert location["path"] == step_url(project, "select", "model")
    assert location["target"] == "#wizard"
    assert step_state(project, StageKey.SCOPE, "use-case")["status"] == StepStatus.COMPLETE


def test_it_rerenders_the_scope_with_an_error_and_stores_nothing_with_two_examples(
    client: Client, project: Project
) -> None:
    response = client.post(step_url(project, "scope", "use-case"), scope_data(n_examples=2))

    assert response.status_code == 200
    assert "Add at least 3 examples (input and output); you have 2." in response.content.decode()
    assert step_state(project, StageKey.SCOPE, "use-case") == {}


def test_it_rerenders_only_the_wizard_fragment_for_an_invalid_htmx_post(
    client: Client, project: Project
) -> None:
    response = client.post(
        step_url(project, "scope", "use-case"), scope_data(use_case="too short"), headers=HTMX
    )

    content = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in content
    assert "Ensure this value has at least 20 characters (it has 9)." in content
    assert "HX-Location" not in response
    assert step_state(project, StageKey.SCOPE, "use-case") == {}


def test_it_rejects_a_metric_target_outside_the_metrics_range(
    client: Client, project: Project
) -> None:
    response = client.post(step_url(project, "scope", "use-case"), scope_data(metric_target="1.5"))

    assert response.status_code == 200
    assert "ROUGE-L ranges from 0 to 1." in response.content.decode()
    assert step_state(project, StageKey.SCOPE, "use-case") == {}


def test_it_adds_an_example_row_without_saving_or_showing_errors(
    client: Client, project: Project
) -> None:
    data = scope_data(n_examples=1, use_case="")
    data["add_example"] = "1"

    response = client.post(step_url(project, "scope", "use-case"), data)

    content = response.content.decode()
    assert response.status_code == 200
    assert 'name="ex-TOTAL_FORMS" value="2"' in content
    assert 'name="ex-1-input"' in content
    assert 'name="ex-2-input"' not in content
    assert 'role="alert"' not in content
    assert step_state(project, StageKey.SCOPE, "use-case") == {}


def test_it_shows_the_stored_scope_when_the_step_is_opened_again(
    client: Client, project: Project
) -> None:
    client.post(step_url(project, "scope", "use-case"), scope_data())

    content = client.get(step_url(project, "scope", "use-case")).content.decode()

    assert "Support agents summarise long customer tickets" in content
    assert "Ticket 2: the printer on floor 2 is jammed again." in content


# --- Select ---------------------------------------------------------------------------


def test_it_stores_the_picked_model_and_moves_on_to_planning(
    client: Client, project: Project, tiny_model: CatalogModel
) -> None:
    response = client.post(step_url(project, "select", "model"), {"base_model": tiny_model.slug})

    assert response.status_code == 302
    assert response["Location"] == step_url(project, "select", "plan")
    state = step_state(project, StageKey.SELECT, "model")
    assert state["status"] == StepStatus.COMPLETE
    assert state["answers"] == {"base_model": "tiny"}


def test_it_asks_for_a_model_when_none_is_picked(
    client: Client, project: Project, tiny_model: CatalogModel
) -> None:
    response = client.post(step_url(project, "select", "model"), {})

    assert response.status_code == 200
    assert "Pick one model from the catalog." in response.content.decode()
    assert step_state(project, StageKey.SELECT, "model") == {}


# --- Prompt ---------------------------------------------------------------------------


def test_it_starts_one_generate_job_and_redirects_to_its_page(
    client: Client,
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    enqueued: list[int],
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("playground", args=[project.slug]), prompt_data(tiny_model))

    job = Job.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("job_detail", args=[project.slug, job.id])
    assert (job.kind, job.status) == (JobKind.GENERATE, JobStatus.QUEUED)
    assert (job.base_model, job.created_by) == (tiny_model, owner)
    assert job.params == {
        "model_ref": "tiny",
        "prompt": "Summarise: the printer is jammed.",
        "max_new_tokens": 16,
        "decoding": "greedy",
        "temperature": 0.7,
        "top_k": 50,
        "top_p": 0.95,
        "seed": 7,
        "use_chat_template": True,
        "repetition_penalty": 1.1,
    }
    assert (job.progress_total, job.progress_unit) == (16, "tokens")
    output = GenerationOutput.objects.get()
    assert (output.job, output.index, output.prompt) == (job, 0, job.params["prompt"])
    assert enqueued == [job.id]


def test_it_answers_an_htmx_prompt_with_the_step_fragment_holding_the_job_status(
    client: Client, project: Project, tiny_model: CatalogModel
) -> None:
    response = client.post(
        reverse("playground", args=[project.slug]), prompt_data(tiny_model), headers=HTMX
    )

    job = Job.objects.get()
    content = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in content
    assert f'id="job-{job.id}"' in content
    assert 'data-status="queued"' in content
    assert 'hx-trigger="every 1s"' in content
    assert GenerationOutput.objects.count() == 1


def test_it_remembers_the_last_prompt_settings(
    client: Client, project: Project, tiny_model: CatalogModel
) -> None:
    client.post(reverse("playground", args=[project.slug]), prompt_data(tiny_model, seed="4242"))

    content = client.get(reverse("playground", args=[project.slug])).content.decode()

    assert 'value="4242"' in content
    assert "Summarise: the printer is jammed." in content


def test_it_preselects_the_model_chosen_in_the_select_step(
    client: Client, project: Project, tiny_model: CatalogModel
) -> None:
    client.post(step_url(project, "select", "model"), {"base_model": tiny_model.slug})

    response = client.get(reverse("playground", args=[project.slug]))

    assert response.context["form"].initial["base_model"] == "tiny"


def test_it_tells_a_viewer_that_they_cannot_start_jobs(
    project: Project, teammate: User, tiny_model: CatalogModel
) -> None:
    client = Client()
    client.force_login(teammate)

    content = client.get(reverse("playground", args=[project.slug])).content.decode()

    assert "Viewers cannot start jobs." in content
    assert "Run prompt</button>" not in content


# --- Planned steps --------------------------------------------------------------------


@pytest.fixture
def planned_step(monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """A step without a form yet ("coming later"), added to the last stage for the test:
    every real step is built, but the wizard still supports announcing one."""
    import dataclasses

    from lifecycle_app.projects import steps

    last = steps.STAGES[-1]
    later = steps.Step("later", "Later", "Something planned.")
    stages = (*steps.STAGES[:-1], dataclasses.replace(last, steps=(*last.steps, later)))
    monkeypatch.setattr(steps, "STAGES", stages)
    return last.key.value, "later"


def test_it_shows_a_planned_step_as_not_available_yet(
    client: Client, project: Project, planned_step: tuple[str, str]
) -> None:
    response = client.get(step_url(project, *planned_step))

    assert response.status_code == 200
    assert "Not available yet." in response.content.decode()


def test_it_answers_405_to_a_post_to_a_planned_step(
    client: Client, project: Project, planned_step: tuple[str, str]
) -> None:
    # A planned step has no form, so it takes GET only (the same answer for everyone).
    response = client.post(step_url(project, *planned_step), {"anything": "1"})

    assert response.status_code == 405
    assert response["Allow"] == "GET"
    assert step_state(project, planned_step[0], "later") == {}


def test_it_renders_a_planned_step_as_a_fragment_to_htmx(
    client: Client, project: Project, planned_step: tuple[str, str]
) -> None:
    response = client.get(step_url(project, *planned_step), headers=HTMX)

    content = response.content.decode()
    assert "<html" not in content
    assert "Not available yet." in content
