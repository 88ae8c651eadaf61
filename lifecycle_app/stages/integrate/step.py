"""The integration checklist step's web side."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from lifecycle_app.common.forms import StepForm
from lifecycle_app.projects.handlers import StepHandler
from lifecycle_app.projects.models import Project, Stage
from lifecycle_app.stages.integrate.forms import IntegrationChecklistForm
from lifecycle_app.stages.integrate.items import CHECKLIST_STATUSES, checklist_initial


class ChecklistStep(StepHandler):
    form_class = IntegrationChecklistForm
    template = "integrate/step.html"

    def initial(
        self, *, project: Project, answers: dict[str, Any], stages: dict[str, Stage]
    ) -> dict[str, Any]:
        return checklist_initial(answers)

    def extra(
        self,
        *,
        request: HttpRequest | None,
        project: Project,
        stages: dict[str, Stage],
        form: StepForm | None,
    ) -> dict[str, Any]:
        return {"checklist_statuses": CHECKLIST_STATUSES}
