"""The Evaluate step's web side: choose candidates and rows, start an evaluation."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.http import HttpRequest
from django.urls import reverse

from lifecycle_app.catalog.selectors import finetuned_models
from lifecycle_app.common.forms import StepForm
from lifecycle_app.datasets.selectors import dataset_list
from lifecycle_app.jobs.models import Job, JobKind
from lifecycle_app.jobs.selectors import latest_job_for_step
from lifecycle_app.projects.handlers import StepHandler
from lifecycle_app.projects.models import Project, Stage
from lifecycle_app.stages.evaluate.forms import EvaluateForm
from lifecycle_app.stages.evaluate.selectors import evaluation_list
from lifecycle_app.stages.evaluate.services import evaluation_create
from lifecycle_app.stages.prompt import selectors as prompt_selectors
from lifecycle_app.stages.prompt.step import prompt_defaults
from lifecycle_app.stages.select.selectors import picked_model_slug


class EvaluateStep(StepHandler):
    form_class = EvaluateForm
    template = "evaluate/step.html"
    starts_job = True

    def initial(
        self, *, project: Project, answers: dict[str, Any], stages: dict[str, Stage]
    ) -> dict[str, Any]:
        """The last evaluation's rows and candidates, else: the zero-shot base model picked
        in Select, the best prompt trial and the newest fine-tuned model, on 50 test rows."""
        last = latest_job_for_step(project=project, kind=JobKind.EVALUATE)
        defaults = prompt_defaults(project=project, stages=stages)
        initial: dict[str, Any] = {
            "dataset": defaults.get("dataset"),
            "template": defaults.get("template"),
        }
        best_id = prompt_selectors.best_trial_id(stages)
        best = prompt_selectors.trials_by_ids(project=project, ids=[best_id]) if best_id else []
        picked = (best[0].params.get("model_ref") if best else None) or picked_model_slug(stages)
        keys = [f"base:{picked}"] if picked else []
        if best:
            keys.append(f"trial:{best[0].id}")
            if best[0].prompt_template_id:
                initial["template"] = best[0].prompt_template_id
        keys += [f"model:{m.id}" for m in finetuned_models(project=project)[:1]]
        initial["candidates"] = keys
        if last is not None:
            params = last.params
            initial.update(
                dataset=params.get("dataset_id"),
                split=params.get("split"),
                rows="all" if params.get("n_rows") is None else "sample",
                n_rows=params.get("n_rows") or 50,
                sample_seed=params.get("sample_seed", 0),
                general_check=params.get("general_check", True),
            )
        return {k: v for k, v in initial.items() if v is not None}

    def extra(
        self,
        *,
        request: HttpRequest | None,
        project: Project,
        stages: dict[str, Stage],
        form: StepForm | None,
    ) -> dict[str, Any]:
        return {
            "datasets": dataset_list(project=project),
            "templates": prompt_selectors.template_latest(project=project),
            "recent_evaluations": evaluation_list(project=project, limit=5),
        }

    def start_job(self, *, form: EvaluateForm, project: Project, user: User) -> Job | None:
        assert form.params is not None and form.cleaned_data
        return evaluation_create(
            project=project,
            user=user,
            dataset=form.cleaned_data["dataset"],
            params=form.params,
            sources=form.sources,
            rows=form.row_count,
        )

    def job_url(self, *, project: Project, job: Job) -> str:
        return reverse("evaluation_detail", args=[project.slug, job.id])
