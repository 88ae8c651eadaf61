"""The generic wizard step page: one view for every step.

Everything that differs between steps comes from the step's declaration
(lifecycle_app/projects/steps.py) and its handler (lifecycle_app/wizard/handlers.py); this
module never names a step.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods
from django_htmx.http import HttpResponseLocation

from lifecycle_app.common.forms import StepForm
from lifecycle_app.common.http import HtmxHttpRequest, authed_user
from lifecycle_app.datasets.models import Dataset
from lifecycle_app.jobs.services import JobLimitReached
from lifecycle_app.projects import selectors as project_selectors
from lifecycle_app.projects import steps
from lifecycle_app.projects.handlers import StepHandler
from lifecycle_app.projects.models import Membership, Project, Stage, StageKey
from lifecycle_app.projects.services import stage_step_save
from lifecycle_app.stages.scope import guide
from lifecycle_app.teams.models import ShareLink
from lifecycle_app.wizard.context import wizard_context
from lifecycle_app.wizard.handlers import handler_for


def _following_url(project: Project, stage: str, step: str) -> str:
    following = steps.next_step(stage, step)
    if following is None:
        return reverse("project_detail", args=[project.slug])
    return reverse("wizard_step", args=[project.slug, following[0].key, following[1].slug])


@login_required
@require_http_methods(["GET", "POST"])
def step_view(request: HtmxHttpRequest, slug: str, stage: str, step: str) -> HttpResponse:
    step_def = steps.step_def(stage, step)
    if step_def is None:
        new = steps.RENAMED_SLUGS.get((stage, step))
        if new is not None:
            return redirect("wizard_step", slug, stage, new, permanent=True)
        raise Http404("No such step.")
    handler = handler_for(step_def)
    if request.method == "POST" and handler is None:
        # A planned step has nothing to save (the same answer for every visitor).
        return HttpResponseNotAllowed(["GET"])
    project, membership = project_selectors.project_get_for_user(
        user=request.user, slug=slug, write=request.method == "POST"
    )
    stages = project_selectors.stages_for_project(project=project)
    answers = project_selectors.step_answers(stages, stage, step)
    form = None
    if handler is not None:
        if request.method == "POST":
            form = handler.form_class(request.POST, project=project)
            if form.is_valid():
                target = _act(request, handler, form, project, stage, step)
                if target is not None:
                    if request.htmx and not handler.starts_job:
                        return HttpResponseLocation(target, target="#wizard", swap="outerHTML")
                    if request.htmx:
                        return HttpResponseLocation(target)
                    return redirect(target)
                # Over-long prompts, a plan that does not fit, a job limit: the form says why.
            stages = project_selectors.stages_for_project(project=project)
        elif handler.live and request.GET:
            form = handler.form_class(request.GET, project=project)
        else:
            initial = handler.initial(project=project, answers=answers, stages=stages)
            form = handler.form_class(initial=initial, project=project)
    return render_step(
        request,
        project=project,
        membership=membership,
        step_def=step_def,
        stages=stages,
        form=form,
        answers=answers,
    )


def _act(
    request: HtmxHttpRequest,
    handler: StepHandler,
    form: StepForm,
    project: Project,
    stage: str,
    step: str,
) -> str | None:
    """Do what a valid POST asks: start the step's job or save its answers. Returns where to
    go next, or None when the job could not start (the form then carries the reason)."""
    user = authed_user(request)
    if handler.starts_job:
        try:
            job = handler.start_job(form=form, project=project, user=user)
        except JobLimitReached as exc:
            form.add_error(None, str(exc))
            return None
        return None if job is None else handler.job_url(project=project, job=job)
    stage_step_save(
        project=project, stage_key=stage, step_slug=step, answers=form.answers(), actor=user
    )
    step_def = steps.step_def(stage, step)
    following = steps.next_step(stage, step)
    saved = f"Saved “{step_def.title if step_def else step}”."
    messages.success(
        request, f"{saved} Next: {following[1].title}." if following is not None else saved
    )
    return _following_url(project, stage, step)


def render_step(
    request: HtmxHttpRequest,
    *,
    project: Project,
    membership: Membership | None,
    step_def: steps.Step,
    stages: dict[str, Stage],
    form: StepForm | None,
    answers: dict[str, Any],
    share: ShareLink | None = None,
) -> HttpResponse:
    """A wizard step page (or its #wizard fragment for htmx).

    With `share`, the read-only page of a share link: no membership, every control left
    out or disabled, links pointing at the link's own /s/ pages.
    """
    stage_def = steps.stage_of(step_def)
    stage, step = stage_def.key.value, step_def.slug
    handler = handler_for(step_def)
    scope = project_selectors.step_answers(stages, StageKey.SCOPE, steps.StepSlug.USE_CASE)
    context = wizard_context(
        project=project, membership=membership, current=(stage, step), stages=stages
    )
    context.update(
        {
            "stage_def": stage_def,
            "step_def": step_def,
            "form": form,
            "answers": answers,
            "following": steps.next_step(stage, step),
            "share": share,
            "task_guide": guide.TASK_TYPES.get(scope.get("task_type", "")),
            "scope": scope,
        }
    )
    if form is not None and membership is not None and not membership.can_write:
        disable_fields(form)
    if handler is not None:
        context.update(
            handler.extra(
                request=None if share else request, project=project, stages=stages, form=form
            )
        )
    template = handler.template if handler is not None else "wizard/planned.html"
    if request.htmx and not request.htmx.history_restore_request:
        template += "#wizard"
    return render(request, template, context)


def _share_dataset_label(dataset: Dataset) -> str:
    counts = dataset.split_counts or {}
    sizes = " · ".join(f"{counts[k]:,} {k}" for k in ("train", "validation", "test") if k in counts)
    return f"a dataset ({sizes} rows)" if sizes else "a dataset"


def _hide_dataset_names(field: forms.Field, saved: Any) -> None:
    """Share pages name no dataset (README, Teams and sharing): a dataset choice offers only
    the saved one, labelled by its split sizes; the others are not listed at all."""
    if not isinstance(field, forms.ModelChoiceField):
        return
    queryset = field.queryset
    if queryset is None or queryset.model is not Dataset:
        return
    saved_ids = saved if isinstance(saved, list | tuple) else [saved]
    ids = [getattr(each, "pk", each) for each in saved_ids if each not in (None, "")]
    field.queryset = queryset.filter(pk__in=ids)
    field.label_from_instance = _share_dataset_label  # type: ignore[method-assign,assignment]


def disable_fields(form: StepForm, *, hide_dataset_names: bool = False) -> None:
    """Render every field of the form (and its example rows) disabled: the page of a viewer
    or a share link shows the answers with nothing that can be changed."""
    subforms = getattr(form, "examples", None)  # the Scope step's example rows
    for each in [form, *(subforms.forms if subforms is not None else [])]:
        for name, field in each.fields.items():
            field.disabled = True
            if hide_dataset_names:
                _hide_dataset_names(field, each.initial.get(name))


def read_only_step(
    request: HtmxHttpRequest, *, project: Project, step_def: steps.Step, share: ShareLink
) -> HttpResponse:
    """A step as a share link shows it: the saved answers, nothing to change."""
    stages = project_selectors.stages_for_project(project=project)
    stage = steps.stage_of(step_def).key.value
    answers = project_selectors.step_answers(stages, stage, step_def.slug)
    handler = handler_for(step_def)
    form = None
    if handler is not None:
        # Always the saved answers: a share visitor's query string plans nothing.
        initial = handler.initial(project=project, answers=answers, stages=stages)
        form = handler.form_class(initial=initial, project=project)
        disable_fields(form, hide_dataset_names=True)
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
