from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods
from django_htmx.http import HttpResponseLocation

from lifecycle_app import guide, planning, selectors, wizard
from lifecycle_app.forms import GenerateForm, PlannerForm, StepForm
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
from lifecycle_app.services.jobs import JobLimitReached, job_create_generate
from lifecycle_app.services.projects import stage_step_save
from lifecycle_app.views.common import HtmxHttpRequest, authed_user, wizard_context


def _initial_for(
    step: wizard.Step, answers: dict[str, Any], stages: dict[str, Any]
) -> dict[str, Any]:
    if step.form_class is PlannerForm:
        initial = dict(answers)
        picked = initial.get("base_model") or selectors.picked_model_slug(stages)
        if picked:
            initial["base_model"] = picked
        return initial
    if step.form_class is GenerateForm:
        initial = dict(answers.get("last_params") or {})
        model_ref = initial.pop("model_ref", None) or selectors.picked_model_slug(stages)
        if model_ref:
            initial["base_model"] = model_ref
        return initial
    return dict(answers)


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
    if step.kind == "job":
        extra["latest_job"] = selectors.latest_job_for_step(project=project, kind=JobKind.GENERATE)
    return extra


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
    job = None
    if step_def.form_class is not None:
        form_class = step_def.form_class
        if request.method == "POST":
            form = form_class(request.POST, project=project)
            if form.is_valid():
                if step_def.kind == "job":
                    assert isinstance(form, GenerateForm)
                    base_model: BaseModel = form.cleaned_data["base_model"]
                    try:
                        job = job_create_generate(
                            project=project,
                            user=authed_user(request),
                            base_model=base_model,
                            params=form.params,
                        )
                    except JobLimitReached as exc:
                        form.add_error(None, str(exc))
                    else:
                        if not request.htmx:
                            return redirect("job_detail", slug=project.slug, job_id=job.id)
                        # htmx: re-render the step with the same settings and the new job.
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
            form = form_class(initial=_initial_for(step_def, answers, stages), project=project)

    if request.method == "POST":
        stages = selectors.stages_for_project(project=project)
    return render_step(
        request,
        project=project,
        membership=membership,
        step_def=step_def,
        stages=stages,
        form=form,
        answers=answers,
        job=job,
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
        }
    )
    if job is not None:
        context["latest_job"] = job
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
        form = step_def.form_class(initial=_initial_for(step_def, answers, stages), project=project)
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
