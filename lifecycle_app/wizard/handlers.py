"""The wizard's registry of step handlers, resolved lazily from the step declaration."""

from __future__ import annotations

from functools import cache

from django.utils.module_loading import import_string

from lifecycle_app.projects.handlers import StepHandler
from lifecycle_app.projects.steps import Step


@cache
def _load(path: str) -> StepHandler:
    handler_class = import_string(path)
    if not (isinstance(handler_class, type) and issubclass(handler_class, StepHandler)):
        raise TypeError(f"{path} is not a StepHandler")
    return handler_class()


def handler_for(step: Step) -> StepHandler | None:
    """The step's handler, or None for a planned step."""
    return _load(step.handler) if step.handler else None
