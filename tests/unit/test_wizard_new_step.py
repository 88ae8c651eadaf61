"""Adding a wizard step is declaring it: a handler plus one `Step` line, no view edited.

The step below exists only in this test: the wizard must list it, render it with and
without htmx, save its answers and show its status, through the generic step view.
"""

from __future__ import annotations

import dataclasses

import pytest
from django import forms
from django.test import Client
from django.urls import reverse

from lifecycle_app.common.forms import StepForm
from lifecycle_app.projects import steps
from lifecycle_app.projects.handlers import StepHandler
from lifecycle_app.projects.models import Project, Stage, StepStatus

HTMX = {"HX-Request": "true"}


class LaunchNotesForm(StepForm):
    notes = forms.CharField(label="What users should know at launch", max_length=200)


class LaunchNotesStep(StepHandler):
    form_class = LaunchNotesForm  # the generic step page renders it


@pytest.fixture
def launch_notes(monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    last = steps.STAGES[-1]
    step = steps.Step(
        "launch-notes",
        "Launch notes",
        "What to tell users when the application launches.",
        f"{__name__}.LaunchNotesStep",
        steps.has("notes"),
    )
    declared = (*steps.STAGES[:-1], dataclasses.replace(last, steps=(*last.steps, step)))
    monkeypatch.setattr(steps, "STAGES", declared)
    return last.key.value, step.slug


@pytest.fixture
def client(owner) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(owner)
    return client


def test_the_project_page_lists_the_declared_step(
    client: Client, project: Project, launch_notes: tuple[str, str]
) -> None:
    page = client.get(reverse("project_detail", args=[project.slug])).content.decode()

    assert "Launch notes" in page


def test_the_declared_step_renders_as_a_page_and_as_an_htmx_fragment(
    client: Client, project: Project, launch_notes: tuple[str, str]
) -> None:
    url = reverse("wizard_step", args=[project.slug, *launch_notes])

    full = client.get(url)
    fragment = client.get(url, headers=HTMX)

    assert full.status_code == fragment.status_code == 200
    assert "<html" in full.content.decode()
    assert "<html" not in fragment.content.decode()
    for page in (full.content.decode(), fragment.content.decode()):
        assert 'id="wizard"' in page
        assert 'name="notes"' in page
        assert "What users should know at launch" in page


def test_the_declared_step_saves_its_answers_and_shows_its_status(
    client: Client, project: Project, launch_notes: tuple[str, str]
) -> None:
    stage, slug = launch_notes
    url = reverse("wizard_step", args=[project.slug, stage, slug])

    response = client.post(url, {"notes": "Answers cite the handbook."})

    assert response.status_code == 302
    saved = Stage.objects.get(project=project, key=stage).step(slug)
    assert saved["answers"] == {"notes": "Answers cite the handbook."}
    assert saved["status"] == StepStatus.COMPLETE
    page = client.get(url).content.decode()
    assert 'class="step status-complete current"' in page
    assert "Answers cite the handbook." in page  # the form shows the saved answer


def test_the_declared_step_shows_a_refused_answer_with_its_error_over_htmx(
    client: Client, project: Project, launch_notes: tuple[str, str]
) -> None:
    url = reverse("wizard_step", args=[project.slug, *launch_notes])

    response = client.post(url, {"notes": ""}, headers=HTMX)

    assert response.status_code == 200  # htmx swaps the step back in with its error
    assert "This field is required." in response.content.decode()
    assert Stage.objects.get(project=project, key=launch_notes[0]).step(launch_notes[1]) == {}
