"""The Select stage's web side: choose a model, plan compute and memory."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from lifecycle_app.catalog import selectors as catalog_selectors
from lifecycle_app.common.forms import StepForm
from lifecycle_app.jobs.models import JobKind
from lifecycle_app.jobs.selectors import latest_job_for_step
from lifecycle_app.projects.handlers import StepHandler
from lifecycle_app.projects.models import Project, Stage
from lifecycle_app.stages.select.forms import ModelPickForm, PlannerForm
from lifecycle_app.stages.select.planning import plan_context
from lifecycle_app.stages.select.selectors import picked_model_slug


class ModelStep(StepHandler):
    form_class = ModelPickForm
    template = "select/model.html"

    def extra(
        self,
        *,
        request: HttpRequest | None,
        project: Project,
        stages: dict[str, Stage],
        form: StepForm | None,
    ) -> dict[str, Any]:
        return {
            "catalog": list(catalog_selectors.catalog_list()),
            "register_job": latest_job_for_step(project=project, kind=JobKind.REGISTER_MODEL),
        }


class PlanStep(StepHandler):
    form_class = PlannerForm
    template = "select/plan.html"
    live = True

    def initial(
        self, *, project: Project, answers: dict[str, Any], stages: dict[str, Stage]
    ) -> dict[str, Any]:
        initial = dict(answers)
        picked = initial.get("base_model") or picked_model_slug(stages)
        if picked:
            initial["base_model"] = picked
        return initial

    def extra(
        self,
        *,
        request: HttpRequest | None,
        project: Project,
        stages: dict[str, Stage],
        form: StepForm | None,
    ) -> dict[str, Any]:
        assert isinstance(form, PlannerForm | None)
        return plan_context(form) if form is not None else {}
