"""The Fine-tuning step's web side: plan a run and start it."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.http import HttpRequest, QueryDict
from django.urls import reverse

from lifecycle_app.common.forms import StepForm
from lifecycle_app.datasets.selectors import dataset_list
from lifecycle_app.jobs.models import Job, JobKind
from lifecycle_app.jobs.selectors import job_list, latest_job_for_step
from lifecycle_app.projects.handlers import StepHandler
from lifecycle_app.projects.models import Project, Stage
from lifecycle_app.stages.finetune.forms import FineTuneForm
from lifecycle_app.stages.finetune.services import finetune_create
from lifecycle_app.stages.prompt import selectors as prompt_selectors
from lifecycle_app.stages.prompt.step import prompt_defaults
from lifecycle_app.stages.select.selectors import picked_model_slug, saved_plan


class FinetuneStep(StepHandler):
    form_class = FineTuneForm
    template = "finetune/step.html"
    starts_job = True
    live = True

    def initial(
        self, *, project: Project, answers: dict[str, Any], stages: dict[str, Stage]
    ) -> dict[str, Any]:
        """Each layer starts from the decisions before it: the model picked in Select, the
        dataset that suits the task and the template of the best prompt trial (so training
        sees its text); then the compute plan saved in Select (method, LoRA rank and
        targets, batch size, sequence length); then the last run's settings, unless the
        plan was saved after that run."""
        last = latest_job_for_step(project=project, kind=JobKind.FINETUNE)
        defaults = prompt_defaults(project=project, stages=stages)
        initial: dict[str, Any] = {
            "base_model": picked_model_slug(stages),
            "dataset": defaults.get("dataset"),
            "template": defaults.get("template"),
        }
        best_id = prompt_selectors.best_trial_id(stages)
        best = prompt_selectors.trials_by_ids(project=project, ids=[best_id]) if best_id else []
        if best and best[0].prompt_template_id:
            initial["template"] = best[0].prompt_template_id
            initial["base_model"] = best[0].params.get("model_ref") or initial["base_model"]
        plan = saved_plan(stages)
        select_stage = stages.get("select")
        plan_is_newer = (
            last is None
            or select_stage is None
            or (bool(plan) and select_stage.updated_at > last.created_at)
        )
        if last is not None:
            params = {k: v for k, v in last.params.items() if k != "template"}
            initial.update(params)
            initial["base_model"] = params.get("model_ref")
            initial["dataset"] = params.get("dataset_id")
            initial["template"] = (last.params.get("template") or {}).get("id", initial["template"])
        if plan_is_newer:
            initial.update(plan)
        # A run that trained for its epochs had no step limit: the form says so (an empty
        # field), rather than falling back to the field's default of 30.
        keep_none = {"max_steps"} if last is not None and "max_steps" in last.params else set()
        return {k: v for k, v in initial.items() if v is not None or k in keep_none}

    def extra(
        self,
        *,
        request: HttpRequest | None,
        project: Project,
        stages: dict[str, Stage],
        form: StepForm | None,
    ) -> dict[str, Any]:
        assert isinstance(form, FineTuneForm | None)
        return {
            "datasets": dataset_list(project=project),
            "templates": prompt_selectors.template_latest(project=project),
            "recent_runs": job_list(user=None, project=project, kind=JobKind.FINETUNE, limit=5),
            **(finetune_plan(form) if form is not None else {}),
        }

    def start_job(self, *, form: FineTuneForm, project: Project, user: User) -> Job | None:
        assert form.params is not None
        return finetune_create(
            project=project,
            user=user,
            base_model=form.cleaned_data["base_model"],
            dataset=form.cleaned_data["dataset"],
            params=form.params,
            total_steps=form.plan["steps"],
        )

    def job_url(self, *, project: Project, job: Job) -> str:
        return reverse("finetune_detail", args=[project.slug, job.id])


def finetune_plan(form: FineTuneForm) -> dict[str, Any]:
    """The fine-tuning plan for the form's values (its initial values when unbound)."""
    if not form.is_bound:
        data = QueryDict(mutable=True)
        values = {**{k: f.initial for k, f in form.fields.items()}, **form.initial}
        for key, value in values.items():
            if value is None:
                continue
            if isinstance(value, list | tuple):
                data.setlist(key, [str(v) for v in value])
            else:
                data[key] = str(getattr(value, "pk", value))
        form = FineTuneForm(data, project=form.project)
    form.is_valid()
    if not form.plan:
        return {
            "ft_plan_errors": [
                f"{form.fields[name].label or name.capitalize()}: {error}"
                if name in form.fields
                else error
                for name, errors in form.errors.items()
                for error in errors
            ]
        }
    return {"ft_plan": form.plan}
