from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.http import Http404, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods
from django_htmx.http import HttpResponseLocation

from lifecycle_app import guide, planning, selectors, wizard
from lifecycle_app.align_forms import AlignForm, RoundForm
from lifecycle_app.deploy_forms import ExportForm, checklist_initial
from lifecycle_app.evaluate_forms import EvaluateForm
from lifecycle_app.finetune_forms import FineTuneForm
from lifecycle_app.forms import PlannerForm, StepForm, TrialForm
from lifecycle_app.models import (
    BaseModel,
    Job,
    JobKind,
    Membership,
    Project,
    ShareLink,
    Stage,
    StageKey,
)
from lifecycle_app.services.deploy import export_create
from lifecycle_app.services.evaluation import evaluation_create
from lifecycle_app.services.feedback import align_create
from lifecycle_app.services.finetune import finetune_create
from lifecycle_app.services.jobs import JobLimitReached
from lifecycle_app.services.projects import stage_step_save
from lifecycle_app.services.trials import trial_create
from lifecycle_app.views.common import HtmxHttpRequest, authed_user, wizard_context
from workers.ml.evaluation.metrics import LABELS as METRIC_LABELS


def _initial_for(
    step: wizard.Step, answers: dict[str, Any], stages: dict[str, Any], project: Any
) -> dict[str, Any]:
    if step.form_class is PlannerForm:
        initial = dict(answers)
        picked = initial.get("base_model") or selectors.picked_model_slug(stages)
        if picked:
            initial["base_model"] = picked
        return initial
    if step.form_class is TrialForm:
        return _trial_initial(project, answers, stages)
    if step.form_class is FineTuneForm:
        return _finetune_initial(project, stages)
    if step.form_class is EvaluateForm:
        return _evaluate_initial(project, stages)
    if step.form_class is AlignForm:
        return _align_initial(project)
    if step.form_class is ExportForm:
        return _export_initial(project, stages)
    if step.slug == "augment":
        return checklist_initial(answers)
    return dict(answers)


def _evaluate_initial(project: Any, stages: dict[str, Any]) -> dict[str, Any]:
    """The last evaluation's rows and candidates, else: the zero-shot base model picked in
    Select, the best prompt trial and the newest fine-tuned model, on 50 test rows."""
    last = selectors.latest_job_for_step(project=project, kind=JobKind.EVALUATE)
    trial_defaults = _trial_initial(project, {}, stages)
    initial: dict[str, Any] = {
        "dataset": trial_defaults.get("dataset"),
        "template": trial_defaults.get("template"),
    }
    best_id = selectors.best_trial_id(stages)
    best = selectors.trials_by_ids(project=project, ids=[best_id]) if best_id else []
    picked = (best[0].params.get("model_ref") if best else None) or selectors.picked_model_slug(
        stages
    )
    keys = [f"base:{picked}"] if picked else []
    if best:
        keys.append(f"trial:{best[0].id}")
        if best[0].prompt_template_id:
            initial["template"] = best[0].prompt_template_id
    newest = selectors.finetuned_models(project=project)[:1]
    keys += [f"model:{m.id}" for m in newest]
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


def _export_initial(project: Any, stages: dict[str, Any]) -> dict[str, Any]:
    """The newest candidate the project trained (else the model picked in Select), and
    the dataset that suits the task."""
    candidate = (
        project.candidates.filter(trained_by_job__isnull=False).order_by("-created_at").first()
    )
    initial: dict[str, Any] = {
        "base_model": candidate.slug if candidate else selectors.picked_model_slug(stages),
    }
    dataset = _trial_initial(project, {}, stages).get("dataset")
    if dataset is not None:
        initial["dataset"] = dataset
    return {k: v for k, v in initial.items() if v is not None}


def _finetune_initial(project: Any, stages: dict[str, Any]) -> dict[str, Any]:
    """The last run's settings, else: the model picked in Select, the dataset that suits
    the task, and the template of the best prompt trial (so training sees its text)."""
    last = selectors.latest_job_for_step(project=project, kind=JobKind.FINETUNE)
    trial_defaults = _trial_initial(project, {}, stages)
    initial: dict[str, Any] = {
        "base_model": selectors.picked_model_slug(stages),
        "dataset": trial_defaults.get("dataset"),
        "template": trial_defaults.get("template"),
    }
    best_id = selectors.best_trial_id(stages)
    best = selectors.trials_by_ids(project=project, ids=[best_id]) if best_id else []
    if best and best[0].prompt_template_id:
        initial["template"] = best[0].prompt_template_id
        initial["base_model"] = best[0].params.get("model_ref") or initial["base_model"]
    if last is not None:
        params = {k: v for k, v in last.params.items() if k != "template"}
        initial.update(params)
        initial["base_model"] = params.get("model_ref")
        initial["dataset"] = params.get("dataset_id")
        initial["template"] = (last.params.get("template") or {}).get("id", initial["template"])
    return {k: v for k, v in initial.items() if v is not None}


def _align_initial(project: Any) -> dict[str, Any]:
    """The last alignment run's settings, else the newest preference set and candidate."""
    last = selectors.latest_job_for_step(project=project, kind=JobKind.ALIGN)
    if last is not None:
        params = dict(last.params)
        params["target_modules"] = ", ".join(params.get("target_modules", []))
        params["base_model"] = params.pop("model_ref", None)
        params["preference_set"] = params.pop("preference_set_id", None)
        return params
    sets = selectors.preference_sets(project=project)
    newest = BaseModel.objects.for_project(project).exclude(shape={}).order_by("-id").first()
    return {
        "preference_set": sets[0].id if sets else None,
        "base_model": newest.slug if newest else None,
    }


def _trial_initial(project: Any, answers: dict[str, Any], stages: dict[str, Any]) -> dict[str, Any]:
    """The last trial's settings (to tweak one thing and run again), else sensible defaults:
    the model picked in Select, the newest dataset and the newest template."""
    last = selectors.latest_job_for_step(project=project, kind=JobKind.TRIAL)
    initial: dict[str, Any] = {}
    if last is not None:
        params = dict(last.params)
        initial.update({k: v for k, v in params.items() if k not in ("template", "shot_lines")})
        initial["shot_lines"] = ", ".join(str(n) for n in params.get("shot_lines", []))
        initial["base_model"] = params.get("model_ref")
        initial["dataset"] = params.get("dataset_id")
    else:
        initial["base_model"] = selectors.picked_model_slug(stages)
        task = selectors.step_answers(stages, StageKey.SCOPE, "use-case").get("task_type")
        datasets = sorted(
            selectors.dataset_list(project=project),
            key=lambda d: d.classification != (task == "classification"),
        )  # stable: the newest dataset that suits the task first
        if datasets:
            initial["dataset"] = datasets[0].id
    newest = max(selectors.template_list(project=project), key=lambda t: t.created_at, default=None)
    if last is not None and last.prompt_template_id and not _newer_template(project, last):
        initial["template"] = last.prompt_template_id
    elif newest is not None:
        initial["template"] = newest.id
    return {k: v for k, v in initial.items() if v is not None}


def _newer_template(project: Any, last: Any) -> bool:
    """Whether a template was saved after the last trial (then the form offers it)."""
    return any(t.created_at > last.created_at for t in selectors.template_list(project=project))


def _step_extra(step: wizard.Step, project: Any, stages: dict[str, Any]) -> dict[str, Any]:
    """What a step's template shows beside its form."""
    scope_answers = selectors.step_answers(stages, StageKey.SCOPE, "use-case")
    task = guide.TASK_TYPES.get(scope_answers.get("task_type", ""))
    extra: dict[str, Any] = {"task_guide": task, "scope": scope_answers}
    if step.slug == "use-case":
        extra["task_types"] = guide.TASK_TYPES
        extra["metrics"] = guide.METRICS
    if step.slug == "model":
        extra["catalog"] = list(selectors.catalog_list())
        extra["register_job"] = selectors.latest_job_for_step(
            project=project, kind=JobKind.REGISTER_MODEL
        )
    if step.slug == "prompt":
        extra["templates"] = selectors.template_latest(project=project)
        extra["datasets"] = selectors.dataset_list(project=project)
        trials = selectors.trial_list(project=project)[:5]
        extra["recent_trials"] = trials
        extra["metric_columns"] = [
            (k, METRIC_LABELS.get(k, k)) for k in selectors.trial_metric_keys(trials)
        ]
        extra["best_id"] = selectors.best_trial_id(stages)
    if step.slug == "evaluate":
        extra["datasets"] = selectors.dataset_list(project=project)
        extra["templates"] = selectors.template_latest(project=project)
        extra["recent_evaluations"] = selectors.evaluation_list(project=project, limit=5)
    if step.slug == "align":
        extra["rounds"] = selectors.feedback_rounds(project=project)
        extra["preference_sets"] = selectors.preference_sets(project=project)
        extra["round_form"] = RoundForm(trials=selectors.succeeded_trials(project=project))
        extra["recent_runs"] = selectors.job_list(
            user=None, project=project, kind=JobKind.ALIGN, limit=5
        )
    if step.slug == "optimize":
        from lifecycle_app.serving import deployed_variant

        rows = selectors.tradeoff_rows(project=project)
        extra["tradeoff"] = rows
        extra["metric_keys"] = [
            (k, METRIC_LABELS.get(k, k))
            for k in dict.fromkeys(s["key"] for r in rows for s in r["scores"])
        ]
        extra["export_jobs"] = selectors.export_jobs(project=project)
        extra["exports_active"] = any(j.is_active for j in extra["export_jobs"])
        extra["deployed"] = deployed_variant(project=project)
        extra["api_tokens"] = selectors.api_token_list(project=project)
        extra["api_max_kb"] = django_settings.API_MAX_BODY_BYTES // 1024
    if step.slug == "augment":
        from lifecycle_app.deploy_forms import CHECKLIST_STATUSES

        extra["checklist_statuses"] = CHECKLIST_STATUSES
    if step.slug == "fine-tune":
        extra["datasets"] = selectors.dataset_list(project=project)
        extra["templates"] = selectors.template_latest(project=project)
        extra["recent_runs"] = selectors.job_list(
            user=None, project=project, kind=JobKind.FINETUNE, limit=5
        )
    return extra


def _start_job(form: StepForm, project: Project, user: User) -> Job | None:
    """Start the job a "job" step's valid form asks for; None (with form errors) when it
    cannot start."""
    try:
        if isinstance(form, TrialForm):
            assert form.params is not None
            if not form.preflight():
                return None
            return trial_create(
                project=project,
                user=user,
                base_model=form.cleaned_data["base_model"],
                dataset=form.cleaned_data["dataset"],
                template=form.cleaned_data["template"],
                params=form.params,
                rows=form.built.rows,
            )
        if isinstance(form, EvaluateForm):
            assert form.params is not None and form.cleaned_data
            return evaluation_create(
                project=project,
                user=user,
                dataset=form.cleaned_data["dataset"],
                params=form.params,
                sources=form.sources,
                rows=form.row_count,
            )
        if isinstance(form, ExportForm):
            assert form.params is not None
            return export_create(
                project=project,
                user=user,
                source=form.cleaned_data["base_model"],
                dataset=form.cleaned_data["dataset"],
                params=form.params,
            )
        if isinstance(form, FineTuneForm):
            assert form.params is not None
            return finetune_create(
                project=project,
                user=user,
                base_model=form.cleaned_data["base_model"],
                dataset=form.cleaned_data["dataset"],
                params=form.params,
                total_steps=form.plan["steps"],
            )
        if isinstance(form, AlignForm):
            assert form.params is not None
            return align_create(
                project=project,
                user=user,
                base_model=form.cleaned_data["base_model"],
                params=form.params,
            )
    except JobLimitReached as exc:
        form.add_error(None, str(exc))
        return None
    raise TypeError(f"{type(form).__name__} starts no job")


@login_required
@require_http_methods(["GET", "POST"])
def step_view(request: HtmxHttpRequest, slug: str, stage: str, step: str) -> HttpResponse:
    step_def = wizard.step_def(stage, step)
    if step_def is None:
        raise Http404("No such step.")
    if request.method == "POST" and step_def.form_class is None:
        # A planned step has nothing to save (the same answer for every visitor).
        return HttpResponseNotAllowed(["GET"])
    project, membership = selectors.project_get_for_user(
        user=request.user, slug=slug, write=request.method == "POST"
    )
    stages = selectors.stages_for_project(project=project)
    answers = selectors.step_answers(stages, stage, step)
    form = None
    if step_def.form_class is not None:
        form_class = step_def.form_class
        if request.method == "POST":
            form = form_class(request.POST, project=project)
            if form.is_valid():
                if step_def.kind == "job":
                    job = _start_job(form, project, authed_user(request))
                    if job is not None:
                        if job.kind == JobKind.EXPORT:  # the step page shows its progress
                            target = reverse("wizard_step", args=[project.slug, stage, step])
                            target += "#exports"
                        else:
                            view = {
                                JobKind.TRIAL: "trial_detail",
                                JobKind.EVALUATE: "evaluation_detail",
                            }.get(JobKind(job.kind), "finetune_detail")
                            target = reverse(view, args=[project.slug, job.id])
                        if request.htmx:
                            return HttpResponseLocation(target)
                        return redirect(target)
                    # Over-long prompts, a plan that does not fit, a job limit: show why.
                else:
                    stage_step_save(
                        project=project,
                        stage_key=stage,
                        step_slug=step,
                        answers=form.answers(),
                        actor=authed_user(request),
                    )
                    following = wizard.next_step(stage, step)
                    target = (
                        reverse(
                            "wizard_step", args=[project.slug, following[0].key, following[1].slug]
                        )
                        if following
                        else reverse("project_detail", args=[project.slug])
                    )
                    if request.htmx:
                        return HttpResponseLocation(target, target="#wizard", swap="outerHTML")
                    return redirect(target)
        elif step_def.live and request.GET:
            form = form_class(request.GET, project=project)
        else:
            form = form_class(
                initial=_initial_for(step_def, answers, stages, project), project=project
            )

    if request.method == "POST":
        stages = selectors.stages_for_project(project=project)
    extra: dict[str, Any] = {}
    if step_def.slug == "optimize" and request.method == "GET":
        from lifecycle_app.views.deploy import NEW_TOKEN_SESSION_KEY

        extra["new_token"] = request.session.pop(NEW_TOKEN_SESSION_KEY, None)
    return render_step(
        request,
        project=project,
        membership=membership,
        step_def=step_def,
        stages=stages,
        form=form,
        answers=answers,
        extra=extra,
    )


def render_step(
    request: HtmxHttpRequest,
    *,
    project: Project,
    membership: Membership | None,
    step_def: wizard.Step,
    stages: dict[str, Stage],
    form: StepForm | None,
    answers: dict[str, Any],
    job: Job | None = None,
    share: ShareLink | None = None,
    extra: dict[str, Any] | None = None,
) -> HttpResponse:
    """A wizard step page (or its #wizard fragment for htmx).

    With `share`, the read-only page of a share link: no membership, every control left
    out or disabled, links pointing at the link's own /s/ pages.
    """
    stage_def = next(s for s in wizard.STAGES if step_def in s.steps)
    stage, step = stage_def.key.value, step_def.slug
    context = wizard_context(
        project=project, membership=membership, current=(stage, step), stages=stages
    )
    context.update(
        {
            "stage_def": stage_def,
            "step_def": step_def,
            "form": form,
            "answers": answers,
            "following": wizard.next_step(stage, step),
            "share": share,
            **_step_extra(step_def, project, stages),
            **(planning.plan_context(form) if isinstance(form, PlannerForm) else {}),
            **(planning.finetune_plan(form) if isinstance(form, FineTuneForm) else {}),
            **(extra or {}),
        }
    )
    template = step_def.template or "wizard/planned.html"
    if request.htmx and not request.htmx.history_restore_request:
        template += "#wizard"
    return render(request, template, context)


def read_only_step(
    request: HtmxHttpRequest, *, project: Project, step_def: wizard.Step, share: ShareLink
) -> HttpResponse:
    """A step as a share link shows it: the saved answers, nothing to change."""
    stages = selectors.stages_for_project(project=project)
    answers = selectors.step_answers(stages, stage_of(step_def), step_def.slug)
    form = None
    if step_def.form_class is not None:
        # Always the saved answers: a share visitor's query string plans nothing.
        form = step_def.form_class(
            initial=_initial_for(step_def, answers, stages, project), project=project
        )
        subforms = getattr(form, "examples", None)  # the Scope step's example rows
        for each in [form, *(subforms.forms if subforms is not None else [])]:
            for field in each.fields.values():
                field.disabled = True
    return render_step(
        request,
        project=project,
        membership=None,
        step_def=step_def,
        stages=stages,
        form=form,
        answers=answers,
        share=share,
    )


def stage_of(step_def: wizard.Step) -> str:
    return next(s.key.value for s in wizard.STAGES if step_def in s.steps)
