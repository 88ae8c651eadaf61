"""Form validation: what a person sees when a prompt or a scope is wrong, and what is stored."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.http import QueryDict
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from lifecycle_app.models import CatalogModel, Job, Project
from lifecycle_app.stages.prompt.forms import GenerateForm
from lifecycle_app.stages.scope.forms import ScopeForm
from lifecycle_app.stages.select.forms import ModelPickForm
from tests.factories import CatalogModelFactory, prompt_data, scope_data


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("lifecycle_app.jobs.services._enqueue", lambda job_id: None)


# --- Prompt validation, through the view ------------------------------------------------

PROMPT_ERRORS = [
    pytest.param({"prompt": ""}, "Enter a prompt.", id="empty-prompt"),
    pytest.param({"prompt": "  \n\t  "}, "Enter a prompt.", id="whitespace-only-prompt"),
    pytest.param(
        {"prompt": "x" * 4001},
        "Ensure this value has at most 4000 characters (it has 4001).",
        id="prompt-over-4000-chars",
    ),
    pytest.param(
        {"max_new_tokens": "0"},
        "Ensure this value is greater than or equal to 1.",
        id="max-new-tokens-0",
    ),
    pytest.param(
        {"max_new_tokens": "100000"},
        "Ensure this value is less than or equal to 2048.",
        id="max-new-tokens-100000",
    ),
    pytest.param(
        {"temperature": "-1"},
        "Ensure this value is greater than or equal to 0.01.",
        id="negative-temperature",
    ),
    pytest.param({"seed": "abc"}, "Enter a whole number.", id="non-numeric-seed"),
    pytest.param(
        {"top_p": "0"}, "Ensure this value is greater than or equal to 0.01.", id="top-p-0"
    ),
    pytest.param(
        {"repetition_penalty": "0.5"},
        "Ensure this value is greater than or equal to 1.0.",
        id="repetition-penalty-below-1",
    ),
    pytest.param(
        {"decoding": "beam"},
        "Select a valid choice. beam is not one of the available choices.",
        id="unknown-decoding",
    ),
    pytest.param(
        {"base_model": "no-such-model"},
        "Select a valid choice. That choice is not one of the available choices.",
        id="unknown-model",
    ),
]


@pytest.mark.parametrize(("overrides", "message"), PROMPT_ERRORS)
def test_it_shows_a_clear_error_and_starts_no_job_for_an_invalid_prompt(
    overrides: dict[str, str],
    message: str,
    owner: User,
    project: Project,
    tiny_model: CatalogModel,
    django_capture_on_commit_callbacks: Any,
) -> None:
    client = Client()
    client.force_login(owner)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client.post(
            reverse("playground", args=[project.slug]),
            prompt_data(tiny_model, **overrides),
        )

    assert response.status_code == 200
    content = response.content.decode()
    assert escape(message) in content
    assert 'role="alert"' in content
    assert Job.objects.count() == 0
    assert callbacks == []


def test_it_refuses_more_new_tokens_than_the_models_context_window(
    owner: User, project: Project
) -> None:
    small = CatalogModelFactory.create(slug="small", name="Small model", context_length=128)
    client = Client()
    client.force_login(owner)

    response = client.post(
        reverse("playground", args=[project.slug]),
        prompt_data(small, max_new_tokens="128"),
    )

    assert response.status_code == 200
    assert (
        "Small model has a context window of 128 tokens; ask for fewer new tokens."
        in response.content.decode()
    )
    assert Job.objects.count() == 0


# --- GenerateForm -------------------------------------------------------------------


def test_it_builds_validated_generate_params(tiny_model: CatalogModel) -> None:
    form = GenerateForm(prompt_data(tiny_model, decoding="sampling", top_k="0"))

    assert form.is_valid(), form.errors
    assert form.params.model_ref == "tiny"
    assert form.params.decoding == "sampling"
    assert form.params.top_k == 0
    assert form.params.max_new_tokens == 16


def test_it_reads_an_unticked_chat_template_box_as_false(tiny_model: CatalogModel) -> None:
    data = prompt_data(tiny_model)
    del data["use_chat_template"]
    form = GenerateForm(data)

    assert form.is_valid(), form.errors
    assert form.params.use_chat_template is False


def test_it_accepts_a_prompt_of_exactly_the_maximum_length(tiny_model: CatalogModel) -> None:
    form = GenerateForm(prompt_data(tiny_model, prompt="y" * 4000))

    assert form.is_valid(), form.errors
    assert len(form.params.prompt) == 4000


# --- ScopeForm ------------------------------------------------------------------------


def test_it_accepts_a_complete_scope_and_returns_json_ready_answers(db: None) -> None:
    form = ScopeForm(scope_data(max_cost_per_1k="1.5", max_latency_ms="250"))

    assert form.is_valid(), (form.errors, form.examples.errors)
    answers = form.answers()
    assert answers["max_cost_per_1k"] == "1.5"
    assert not isinstance(answers["max_cost_per_1k"], Decimal)
    assert answers["max_latency_ms"] == 250
    assert answers["examples"] == [
        {
            "input": f"Ticket {i}: the printer on floor {i} is jammed again.",
            "output": f"Printer {i} jammed.",
        }
        for i in range(3)
    ]


def test_it_leaves_optional_budgets_empty(db: None) -> None:
    form = ScopeForm(scope_data(max_cost_per_1k="", max_latency_ms=""))

    assert form.is_valid(), (form.errors, form.examples.errors)
    assert form.answers()["max_cost_per_1k"] is None
    assert form.answers()["max_latency_ms"] is None


def test_it_requires_at_least_three_examples(db: None) -> None:
    form = ScopeForm(scope_data(n_examples=2))

    assert not form.is_valid()
    assert form.examples.non_form_errors() == [
        "Add at least 3 examples (input and output); you have 2."
    ]


def test_it_requires_both_sides_of_an_example(db: None) -> None:
    data = scope_data()
    data["ex-1-output"] = ""
    form = ScopeForm(data)

    assert not form.is_valid()
    assert form.examples.errors[1] == {"output": ["This field is required."]}


@pytest.mark.parametrize(
    ("metric", "target", "message"),
    [
        ("f1", "1.01", "F1 ranges from 0 to 1."),
        ("bleu", "-3", "BLEU ranges from 0 to 100."),
        ("human_rating", "0.5", "Human rating (1-5) ranges from 1 to 5."),
    ],
)
def test_it_rejects_a_target_outside_the_metrics_range(
    metric: str, target: str, message: str, db: None
) -> None:
    form = ScopeForm(scope_data(success_metric=metric, metric_target=target))

    assert not form.is_valid()
    assert form.errors["metric_target"] == [message]


@pytest.mark.parametrize(("metric", "target"), [("bleu", "35"), ("human_rating", "4.5")])
def test_it_accepts_a_target_inside_the_metrics_range(metric: str, target: str, db: None) -> None:
    form = ScopeForm(scope_data(success_metric=metric, metric_target=target))

    assert form.is_valid(), form.errors


def test_it_adds_an_example_row_and_reports_no_errors(db: None) -> None:
    data = QueryDict(mutable=True)
    data.update(scope_data(n_examples=3, use_case=""))
    data["add_example"] = "1"
    form = ScopeForm(data)

    assert form.is_valid() is False
    assert form.errors == {}
    assert len(form.examples.forms) == 4
    assert all(not f.errors for f in form.examples.forms)
    assert not form.examples.non_form_errors()


def test_it_starts_three_rows_when_the_row_count_is_garbled(db: None) -> None:
    data = QueryDict(mutable=True)
    data.update(scope_data(n_examples=0))
    data["ex-TOTAL_FORMS"] = "lots"
    data["add_example"] = "1"
    form = ScopeForm(data)

    form.is_valid()

    assert len(form.examples.forms) == 3


def test_it_prefills_the_examples_from_stored_answers(db: None) -> None:
    examples = [{"input": "a", "output": "b"}, {"input": "c", "output": "d"}]
    form = ScopeForm(initial={"examples": examples})

    # At least the minimum number of rows, the stored ones first.
    assert len(form.examples.forms) == 3
    assert form.examples.forms[1].initial == {"input": "c", "output": "d"}


# --- ModelPickForm ----------------------------------------------------------------------


def test_it_answers_with_the_picked_models_slug(tiny_model: CatalogModel) -> None:
    form = ModelPickForm({"base_model": "tiny"})

    assert form.is_valid(), form.errors
    assert form.answers() == {"base_model": "tiny"}


def test_it_asks_to_pick_a_model(tiny_model: CatalogModel) -> None:
    form = ModelPickForm({})

    assert not form.is_valid()
    assert form.errors["base_model"] == ["Pick one model from the catalog."]
