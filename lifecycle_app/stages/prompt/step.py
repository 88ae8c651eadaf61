"""The Prompt engineering step's web side: start a prompt trial."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.http import HttpRequest
from django.urls import reverse

from lifecycle_app.common.forms import StepForm
from lifecycle_app.datasets.selectors import dataset_list
from lifecycle_app.jobs.models import Job, JobKind
from lifecycle_app.jobs.selectors import latest_job_for_step
from lifecycle_app.projects.handlers import StepHandler
from lifecycle_app.projects.models import Project, Stage, StageKey
from lifecycle_app.projects.selectors import step_answers
from lifecycle_app.projects.steps import StepSlug
from lifecycle_app.stages.prompt import selectors
from lifecycle_app.stages.prompt.forms import TrialForm
from lifecycle_app.stages.prompt.services import trial_create
from lifecycle_app.stages.select.selectors import picked_model_slug
from workers.ml.scoring.metrics import LABELS as METRIC_LABELS


def prompt_defaults(*, project: Project, stages: dict[str, Stage]) -> dict[str, Any]:
    """The last trial's settings (to tweak one thing and run again), else sensible defaults:
    the model picked in Select, the newest dataset that suits the task and the newest
    template. Later steps start from these too."""
    last = latest_job_for_step(project=project, kind=JobKind.TRIAL)
    initial: dict[str, Any] = {}
    if last is not None:
        params = dict(last.params)
        initial.update({k: v for k, v in params.items() if k not in ("template", "shot_lines")})
        initial["shot_lines"] = ", ".join(str(n) for n in params.get("shot_lines", []))
        initial["base_model"] = params.get("model_ref")
        initial["dataset"] = params.get("dataset_id")
    else:
        initial["base_model"] = picked_model_slug(stages)
        task = step_answers(stages, StageKey.SCOPE, StepSlug.USE_CASE).get("task_type")
        datasets = sorted(
            dataset_list(project=project),
            key=lambda d: d.classification != (task == "classification"),
        )  # stable: the newest dataset that suits the task first
        if datasets:
            initial["dataset"] = datasets[0].id
    templates = selectors.template_list(project=project)
    newest = max(templates, key=lambda t: t.created_at, default=None)
    # A template saved after the last trial is offered instead of the trial's.
    newer = last is not None and any(t.created_at > last.created_at for t in templates)
    if last is not None and last.prompt_template_id and not newer:
        initial["template"] = last.prompt_template_id
    elif newest is not None:
        initial["template"] = newest.id
    return {k: v for k, v in initial.items() if v is not None}


class PromptStep(StepHandler):
    form_class = TrialForm
    template = "prompt/step.html"
    starts_job = True

    def initial(
        self, *, project: Project, answers: dict[str, Any], stages: dict[str, Stage]
    ) -> dict[str, Any]:
        return prompt_defaults(project=project, stages=stages)

    def extra(
        self,
        *,
        request: HttpRequest | None,
        project: Project,
        stages: dict[str, Stage],
        form: StepForm | None,
    ) -> dict[str, Any]:
        trials = selectors.trial_list(project=project)[:5]
        return {
            "templates": selectors.template_latest(project=project),
            "datasets": dataset_list(project=project),
            "recent_trials": trials,
            "metric_columns": [
                (k, METRIC_LABELS.get(k, k)) for k in selectors.trial_metric_keys(trials)
            ],
            "best_id": selectors.best_trial_id(stages),
        }

    def start_job(self, *, form: TrialForm, project: Project, user: User) -> Job | None:
        assert form.params is not None
        if not form.preflight():
            return None  # prompts over the budget: the form says which
        return trial_create(
            project=project,
            user=user,
            base_model=form.cleaned_data["base_model"],
            dataset=form.cleaned_data["dataset"],
            template=form.cleaned_data["template"],
            params=form.params,
            rows=form.built.rows,
        )

    def job_url(self, *, project: Project, job: Job) -> str:
        return reverse("trial_detail", args=[project.slug, job.id])
