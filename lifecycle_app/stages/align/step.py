"""The Align step's web side: rating rounds, preference sets, and starting a DPO run."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.http import HttpRequest
from django.urls import reverse

from lifecycle_app.catalog.models import CatalogModel
from lifecycle_app.common.forms import StepForm
from lifecycle_app.jobs.models import Job, JobKind
from lifecycle_app.jobs.selectors import job_list, latest_job_for_step
from lifecycle_app.projects.handlers import StepHandler
from lifecycle_app.projects.models import Project, Stage
from lifecycle_app.stages.align import selectors
from lifecycle_app.stages.align.forms import AlignForm, RoundForm
from lifecycle_app.stages.align.services import align_create
from lifecycle_app.stages.prompt.selectors import succeeded_trials


class AlignStep(StepHandler):
    form_class = AlignForm
    template = "align/step.html"
    starts_job = True

    def initial(
        self, *, project: Project, answers: dict[str, Any], stages: dict[str, Stage]
    ) -> dict[str, Any]:
        """The last alignment run's settings, else the newest preference set and candidate."""
        last = latest_job_for_step(project=project, kind=JobKind.ALIGN)
        if last is not None:
            params = dict(last.params)
            params["target_modules"] = ", ".join(params.get("target_modules", []))
            params["base_model"] = params.pop("model_ref", None)
            params["preference_set"] = params.pop("preference_set_id", None)
            return params
        sets = selectors.preference_sets(project=project)
        newest = CatalogModel.objects.for_project(project).exclude(shape={}).order_by("-id").first()
        return {
            "preference_set": sets[0].id if sets else None,
            "base_model": newest.slug if newest else None,
        }

    def extra(
        self,
        *,
        request: HttpRequest | None,
        project: Project,
        stages: dict[str, Stage],
        form: StepForm | None,
    ) -> dict[str, Any]:
        return {
            "rounds": selectors.feedback_rounds(project=project),
            "preference_sets": selectors.preference_sets(project=project),
            "round_form": RoundForm(trials=succeeded_trials(project=project)),
            "recent_runs": job_list(user=None, project=project, kind=JobKind.ALIGN, limit=5),
        }

    def start_job(self, *, form: AlignForm, project: Project, user: User) -> Job | None:
        assert form.params is not None
        return align_create(
            project=project,
            user=user,
            base_model=form.cleaned_data["base_model"],
            params=form.params,
        )

    def job_url(self, *, project: Project, job: Job) -> str:
        return reverse("align_run_detail", args=[project.slug, job.id])
