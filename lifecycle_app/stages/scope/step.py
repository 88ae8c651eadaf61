"""The Scope step's web side: define the use case."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from lifecycle_app.common.forms import StepForm
from lifecycle_app.projects.handlers import StepHandler
from lifecycle_app.projects.models import Project, Stage
from lifecycle_app.stages.scope import guide
from lifecycle_app.stages.scope.forms import ScopeForm


class UseCaseStep(StepHandler):
    form_class = ScopeForm
    template = "scope/step.html"

    def extra(
        self,
        *,
        request: HttpRequest | None,
        project: Project,
        stages: dict[str, Stage],
        form: StepForm | None,
    ) -> dict[str, Any]:
        return {"task_types": guide.TASK_TYPES, "metrics": guide.METRICS}
