"""Select reads: the model the project picked."""

from __future__ import annotations

from lifecycle_app.projects.models import Stage
from lifecycle_app.projects.selectors import step_answers
from lifecycle_app.projects.steps import StepSlug


def picked_model_slug(stages: dict[str, Stage]) -> str | None:
    """The model the project chose in Select, if it chose one."""
    return step_answers(stages, "select", StepSlug.MODEL).get("base_model")
