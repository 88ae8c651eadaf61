"""The code's shape: module sizes, step handlers that resolve, models under their old names."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.apps import apps

from lifecycle_app.projects import steps
from lifecycle_app.projects.handlers import StepHandler
from lifecycle_app.wizard.handlers import handler_for

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 500


def test_no_source_module_is_over_500_lines() -> None:
    """App, workers and benchmarks (tests and migrations aside): split a module by
    responsibility before it passes ~500 lines."""
    too_long = {
        str(path.relative_to(ROOT)): n
        for folder in ("lifecycle_app", "workers", "bench")
        for path in (ROOT / folder).rglob("*.py")
        if "migrations" not in path.parts
        and (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }

    assert too_long == {}


@pytest.mark.parametrize(
    "step",
    [step for stage in steps.STAGES for step in stage.steps],
    ids=lambda step: step.slug,
)
def test_every_declared_step_names_a_handler_that_resolves(step: steps.Step) -> None:
    handler = handler_for(step)

    assert isinstance(handler, StepHandler)
    assert handler.form_class is not None
    assert (ROOT / "templates" / handler.template).exists()
    if handler.starts_job:
        assert type(handler).start_job is not StepHandler.start_job
        assert type(handler).job_url is not StepHandler.job_url


# Every model of the app: moving models into packages kept their app label and tables; the one
# deliberate rename (BaseModel -> CatalogModel, migration 0013) renamed its table with it.
MODEL_NAMES = [
    "Project",
    "Membership",
    "Stage",
    "CatalogModel",
    "Dataset",
    "PromptTemplate",
    "Job",
    "GenerationOutput",
    "TrialExample",
    "ShareLink",
    "Activity",
    "MetricPoint",
    "Artifact",
    "EvaluationCandidate",
    "EvaluationExample",
    "FeedbackRound",
    "FeedbackItem",
    "Rating",
    "PreferenceSet",
    "PreferencePair",
    "ModelVariant",
    "ApiToken",
    "ServingLog",
]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_keeps_its_app_label_and_table(name: str) -> None:
    model = apps.get_model("lifecycle_app", name)

    assert model._meta.app_label == "lifecycle_app"
    assert model._meta.db_table == f"lifecycle_app_{name.lower()}"
