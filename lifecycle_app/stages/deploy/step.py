"""The Optimize-and-deploy step's web side: export variants, compare them, deploy one."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.http import HttpRequest
from django.urls import reverse

from lifecycle_app.common.forms import StepForm
from lifecycle_app.jobs.models import Job
from lifecycle_app.projects import selectors as projects_selectors
from lifecycle_app.projects.handlers import StepHandler
from lifecycle_app.projects.models import Project, Stage, StageKey
from lifecycle_app.projects.steps import StepSlug
from lifecycle_app.stages.deploy import selectors
from lifecycle_app.stages.deploy.forms import ExportForm
from lifecycle_app.stages.deploy.services import export_create
from lifecycle_app.stages.deploy.serving import (
    API_EXAMPLE_INPUT,
    deployed_variant,
    serving_example,
)
from lifecycle_app.stages.deploy.verdict import quality_warning, tradeoff_verdict
from lifecycle_app.stages.deploy.views import NEW_TOKEN_SESSION_KEY
from lifecycle_app.stages.prompt.step import prompt_defaults
from lifecycle_app.stages.select.selectors import picked_model_slug
from workers.ml.scoring.metrics import LABELS as METRIC_LABELS


class DeployStep(StepHandler):
    form_class = ExportForm
    template = "deploy/step.html"
    starts_job = True

    def initial(
        self, *, project: Project, answers: dict[str, Any], stages: dict[str, Stage]
    ) -> dict[str, Any]:
        """The newest candidate the project trained (else the model picked in Select), and
        the dataset that suits the task."""
        candidate = (
            project.candidates.filter(trained_by_job__isnull=False).order_by("-created_at").first()
        )
        initial: dict[str, Any] = {
            "base_model": candidate.slug if candidate else picked_model_slug(stages),
            "dataset": prompt_defaults(project=project, stages=stages).get("dataset"),
        }
        return {k: v for k, v in initial.items() if v is not None}

    def extra(
        self,
        *,
        request: HttpRequest | None,
        project: Project,
        stages: dict[str, Stage],
        form: StepForm | None,
    ) -> dict[str, Any]:
        rows = selectors.tradeoff_rows(project=project)
        for row in rows:
            row["warning"] = quality_warning(row)
        scope = projects_selectors.step_answers(stages, StageKey.SCOPE, StepSlug.USE_CASE)
        exports = selectors.export_jobs(project=project)
        deployed = deployed_variant(project=project)
        extra = {
            "tradeoff": rows,
            "verdict": tradeoff_verdict(rows=rows, scope=scope),
            "metric_keys": [
                (k, METRIC_LABELS.get(k, k))
                for k in dict.fromkeys(s["key"] for r in rows for s in r["scores"])
            ],
            "export_jobs": exports,
            "exports_active": any(j.is_active for j in exports),
            "deployed": deployed,
            "serving": serving_example(variant=deployed) if deployed is not None else None,
            "api_tokens": selectors.api_token_list(project=project),
            "api_max_kb": settings.API_MAX_BODY_BYTES // 1024,
            "api_example_input": API_EXAMPLE_INPUT,
        }
        if request is not None and request.method == "GET":
            # A token just created is shown once, on the page the creation redirects to.
            extra["new_token"] = request.session.pop(NEW_TOKEN_SESSION_KEY, None)
        return extra

    def start_job(self, *, form: ExportForm, project: Project, user: User) -> Job | None:
        assert form.params is not None
        return export_create(
            project=project,
            user=user,
            source=form.cleaned_data["base_model"],
            dataset=form.cleaned_data["dataset"],
            params=form.params,
        )

    def job_url(self, *, project: Project, job: Job) -> str:
        # The step page itself shows an export's progress.
        step = reverse(
            "wizard_step", args=[project.slug, StageKey.INTEGRATE.value, StepSlug.DEPLOY]
        )
        return f"{step}#exports"
