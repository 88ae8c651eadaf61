"""Prompt templates, prompt trials (table, detail, side by side, best) and the playground.

Starting a trial happens on the wizard's Adapt / Prompt step (lifecycle_app/wizard/views.py with this stage's step.py).
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from lifecycle_app.common.http import HtmxHttpRequest, authed_user
from lifecycle_app.datasets import selectors as datasets_selectors
from lifecycle_app.datasets.models import Dataset
from lifecycle_app.jobs import selectors as jobs_selectors
from lifecycle_app.jobs.models import Job, JobKind
from lifecycle_app.jobs.services import JobLimitReached
from lifecycle_app.projects import selectors as projects_selectors
from lifecycle_app.projects.models import Membership, Project, StageKey
from lifecycle_app.projects.steps import StepSlug
from lifecycle_app.stages.prompt import building as prompting
from lifecycle_app.stages.prompt import selectors as prompt_selectors
from lifecycle_app.stages.prompt.forms import GenerateForm, PromptTemplateForm, TrialForm
from lifecycle_app.stages.prompt.playground import job_create_generate
from lifecycle_app.stages.prompt.services import (
    TemplateNameTaken,
    template_create,
    template_revise,
    trial_mark_best,
)
from lifecycle_app.stages.select import selectors as select_selectors
from lifecycle_app.teams.models import ShareLink
from workers.ml.scoring.metrics import LABELS

MAX_COMPARE = 6
PREVIEW_TRAIN_ROWS = 20


def _metric_columns(keys: list[str]) -> list[tuple[str, str]]:
    return [(k, LABELS.get(k, k)) for k in keys]


@login_required
@require_GET
def trial_list_view(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    project, membership = projects_selectors.project_get_for_user(user=request.user, slug=slug)
    return trial_list_response(request, project=project, membership=membership)


def trial_list_response(
    request: HtmxHttpRequest,
    *,
    project: Project,
    membership: Membership | None,
    share: ShareLink | None = None,
) -> HttpResponse:
    """The trials table (a member's page, or a share link's read-only twin with `share`)."""
    sort = request.GET.get("sort") or "created"
    descending = request.GET.get("dir", "desc") != "asc"
    trials = prompt_selectors.trial_list(project=project)
    metric_keys = prompt_selectors.trial_metric_keys(trials)
    if sort not in (*prompt_selectors.TRIAL_SORTS, *metric_keys):
        sort = "created"
    trials = prompt_selectors.trial_list(project=project, sort=sort, descending=descending)
    stages = projects_selectors.stages_for_project(project=project)
    context = {
        "project": project,
        "membership": membership,
        "trials": trials,
        "metric_columns": _metric_columns(metric_keys),
        "sort": sort,
        "descending": descending,
        "best_id": prompt_selectors.best_trial_id(stages),
        "polling": jobs_selectors.any_active(trials),
        "share": share,
    }
    template = "prompt/list.html"
    if request.htmx and request.htmx.target == "trials-table":  # the table's own polling
        template += "#table"
    return render(request, template, context)


@login_required
@require_GET
def trial_detail(request: HtmxHttpRequest, slug: str, trial_id: int) -> HttpResponse:
    project, membership = projects_selectors.project_get_for_user(user=request.user, slug=slug)
    job = prompt_selectors.trial_get(project=project, job_id=trial_id)
    return trial_detail_response(request, project=project, membership=membership, job=job)


def trial_detail_response(
    request: HtmxHttpRequest,
    *,
    project: Project,
    membership: Membership | None,
    job: Job,
    share: ShareLink | None = None,
) -> HttpResponse:
    """One trial's outputs row by row (or its share link's read-only twin)."""
    stages = projects_selectors.stages_for_project(project=project)
    examples = prompt_selectors.trial_examples(job=job)
    context = {
        "project": project,
        "membership": membership,
        "job": job,
        "examples": examples,
        "metric_columns": _metric_columns(prompt_selectors.trial_metric_keys([job])),
        "best_id": prompt_selectors.best_trial_id(stages),
        "counts": _status_counts(examples),
        "share": share,
    }
    template = "prompt/detail.html"
    if request.htmx and request.htmx.target == "trial-live":  # the page's own polling
        template += "#live"
    return render(request, template, context)


def _status_counts(examples: list[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for e in examples:
        counts[e.status] = counts.get(e.status, 0) + 1
    return counts


def _int_list(values: list[str]) -> list[int]:
    return [int(v) for v in values if v.isdigit()]


@login_required
@require_GET
def trial_compare(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    """Two or more trials side by side, row by row, with the reference."""
    project, membership = projects_selectors.project_get_for_user(user=request.user, slug=slug)
    return trial_compare_response(request, project=project, membership=membership)


def trial_compare_response(
    request: HtmxHttpRequest,
    *,
    project: Project,
    membership: Membership | None,
    share: ShareLink | None = None,
) -> HttpResponse:
    ids = list(dict.fromkeys(_int_list(request.GET.getlist("t"))))[:MAX_COMPARE]
    trials = prompt_selectors.trials_by_ids(project=project, ids=ids)
    if len(trials) < 2:
        context: dict[str, Any] = {
            "project": project,
            "membership": membership,
            "too_few": True,
            "share": share,
        }
        return render(request, "prompt/compare.html", context)
    rows, shared_only = _aligned_rows(trials)
    keys = prompt_selectors.trial_metric_keys(trials)
    context = {
        "project": project,
        "membership": membership,
        "trials": trials,
        "rows": rows,
        "shared_only": shared_only,
        "metric_columns": _metric_columns(keys),
        "primary": keys[-1] if keys else "",
        "best_id": prompt_selectors.best_trial_id(
            projects_selectors.stages_for_project(project=project)
        ),
        "share": share,
    }
    return render(request, "prompt/compare.html", context)


def _aligned_rows(trials: list[Any]) -> tuple[list[dict[str, Any]], bool]:
    """Rows keyed by (dataset, split, line): the same example in every trial. Only rows
    every trial ran are shown; the flag says whether some were left out."""
    per_trial = [
        {
            (t.dataset_id, t.params.get("split"), e.line): e
            for e in prompt_selectors.trial_examples(job=t)
        }
        for t in trials
    ]
    first = prompt_selectors.trial_examples(job=trials[0])
    rows = []
    for e in first:
        key = (trials[0].dataset_id, trials[0].params.get("split"), e.line)
        cells = [m.get(key) for m in per_trial]
        if all(c is not None for c in cells):
            rows.append(
                {"line": e.line, "input": e.input, "reference": e.reference, "cells": cells}
            )
    shared_only = any(len(m) != len(rows) for m in per_trial)
    return rows, shared_only


@login_required
@require_POST
def trial_best(request: HtmxHttpRequest, slug: str, trial_id: int) -> HttpResponse:
    project, _ = projects_selectors.project_get_for_user(user=request.user, slug=slug, write=True)
    job = prompt_selectors.trial_get(project=project, job_id=trial_id)
    trial_mark_best(project=project, job=job, user=authed_user(request))
    messages.success(request, f"Trial #{job.id} is now the project's best prompt.")
    if request.POST.get("back") == "list":
        return redirect("trial_list", slug=project.slug)
    return redirect("trial_detail", slug=project.slug, trial_id=job.id)


# --- Templates --------------------------------------------------------------------------


def _first_dataset(project: Project) -> Dataset | None:
    datasets = datasets_selectors.dataset_list(project=project)
    return datasets[0] if datasets else None


@login_required
@require_http_methods(["GET", "POST"])
def template_new(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    project, membership = projects_selectors.project_get_for_user(
        user=request.user, slug=slug, write=request.method == "POST"
    )
    plain_note = ""
    if request.method == "POST":
        form = PromptTemplateForm(request.POST)
        if form.is_valid():
            try:
                template = template_create(
                    project=project,
                    user=authed_user(request),
                    name=form.cleaned_data["name"],
                    fields=form.template_fields(),
                    note=form.cleaned_data["note"],
                )
            except TemplateNameTaken as exc:
                form.add_error("name", str(exc))
            else:
                messages.success(request, f"Saved template '{template}'.")
                return redirect("wizard_step", project.slug, StageKey.ADAPT, StepSlug.PROMPT)
    else:
        stages = projects_selectors.stages_for_project(project=project)
        scope = projects_selectors.step_answers(stages, StageKey.SCOPE, StepSlug.USE_CASE)
        initial, plain_note = prompting.template_suggestion(
            project=project,
            model_slug=select_selectors.picked_model_slug(stages),
            task_type=scope.get("task_type", ""),
            dataset=_first_dataset(project),
        )
        taken = {t.name for t in prompt_selectors.template_latest(project=project)}
        if initial["name"] in taken:
            initial["name"] = f"{initial['name']} {len(taken) + 1}"
        form = PromptTemplateForm(initial=initial)
    context = {
        "project": project,
        "membership": membership,
        "form": form,
        "template": None,
        "plain_note": plain_note,
    }
    return render(request, "prompt/template.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def template_detail(request: HtmxHttpRequest, slug: str, template_id: int) -> HttpResponse:
    """One version; saving the form writes the next version (old trials keep theirs)."""
    project, membership = projects_selectors.project_get_for_user(
        user=request.user, slug=slug, write=request.method == "POST"
    )
    template = prompt_selectors.template_get(project=project, template_id=template_id)
    fields = {
        "name": template.name,
        "instruction": template.instruction,
        "example_format": template.example_format,
        "body": template.body,
        "use_chat_template": template.use_chat_template,
        "shot_style": template.shot_style,
    }
    if request.method == "POST":
        form = PromptTemplateForm(request.POST, initial=fields, editing=True)
        if form.is_valid():
            revised = template_revise(
                template=template,
                user=authed_user(request),
                fields=form.template_fields(),
                note=form.cleaned_data["note"],
            )
            if revised.id == template.id or revised.version <= template.version:
                messages.info(request, "Nothing changed, so no new version was saved.")
            else:
                messages.success(request, f"Saved version {revised.version} of '{revised.name}'.")
            return redirect("template_detail", slug=project.slug, template_id=revised.id)
    else:
        form = PromptTemplateForm(initial=fields, editing=True)
    context = {
        "project": project,
        "membership": membership,
        "form": form,
        "template": template,
        "versions": prompt_selectors.template_versions(template=template),
    }
    return render(request, "prompt/template.html", context)


# --- Preview ----------------------------------------------------------------------------


@login_required
@require_GET
def prompt_preview(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    """The exact text the model will see for one row of the trial form's current values,
    and whether every row fits the context window."""
    project, _ = projects_selectors.project_get_for_user(user=request.user, slug=slug)
    form = TrialForm(request.GET, project=project)
    context: dict[str, Any] = {"project": project, "form": form}
    if form.is_valid() and form.params is not None:
        params = form.params
        try:
            built = prompting.build_for_trial(
                base_model=form.cleaned_data["base_model"],
                dataset=form.cleaned_data["dataset"],
                params=params,
            )
        except prompting.PromptingError as exc:
            context["preview_error"] = str(exc)
        else:
            try:
                index = min(max(int(request.GET.get("row", "0")), 0), built.rows - 1)
            except ValueError:
                index = 0
            row = built.prompts[index]
            context.update(
                {
                    "built": built,
                    "row": row,
                    "row_index": index,
                    # Exactly what will run for this row (truncated or skipped included).
                    "preview": {
                        "user_text": row.user_text,
                        "final_text": row.text,
                        "chat_applied": bool(row.text) and row.text != row.user_text,
                        "has_chat_template": built.kit.has_chat_template,
                        "tokens": row.tokens,
                        "context_length": built.kit.context_length,
                    },
                    "train_rows": prompting.split_rows(
                        form.cleaned_data["dataset"], "train", PREVIEW_TRAIN_ROWS
                    ),
                    "max_tokens": max(p.tokens for p in built.prompts),
                }
            )
    return render(request, "prompt/_preview.html", context)


# --- Playground -------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def playground(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    """One prompt, one output: for quick tries outside the measured trials."""
    project, membership = projects_selectors.project_get_for_user(
        user=request.user, slug=slug, write=request.method == "POST"
    )
    stages = projects_selectors.stages_for_project(project=project)
    job = None
    if request.method == "POST":
        form = GenerateForm(request.POST, project=project)
        if form.is_valid():
            try:
                job = job_create_generate(
                    project=project,
                    user=authed_user(request),
                    base_model=form.cleaned_data["base_model"],
                    params=form.params,
                )
            except JobLimitReached as exc:
                form.add_error(None, str(exc))
            else:
                if not request.htmx:
                    return redirect("job_detail", slug=project.slug, job_id=job.id)
    else:
        answers = projects_selectors.step_answers(stages, StageKey.ADAPT, StepSlug.PROMPT)
        initial = dict(answers.get("last_params") or {})
        model_ref = initial.pop("model_ref", None) or select_selectors.picked_model_slug(stages)
        if model_ref:
            initial["base_model"] = model_ref
        form = GenerateForm(initial=initial, project=project)
    scope = projects_selectors.step_answers(stages, StageKey.SCOPE, StepSlug.USE_CASE)
    context = {
        "project": project,
        "membership": membership,
        "form": form,
        "scope": scope,
        "latest_job": job
        or jobs_selectors.latest_job_for_step(project=project, kind=JobKind.GENERATE),
    }
    template = "prompt/playground.html"
    if request.htmx and not request.htmx.history_restore_request:
        template += "#playground"
    return render(request, template, context)
