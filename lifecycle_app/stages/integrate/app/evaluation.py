"""Measuring applications: evaluation sets (uploaded, or drafted by a model and reviewed
by a person) and app evaluations with their scorecard. Views and the job's parameters."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from lifecycle_app.common.http import HtmxHttpRequest, authed_user
from lifecycle_app.jobs.models import Job
from lifecycle_app.jobs.services import JobLimitReached
from lifecycle_app.projects import selectors as projects_selectors
from lifecycle_app.projects.models import Project
from lifecycle_app.stages.integrate.app import evalsets, selectors, services
from lifecycle_app.stages.integrate.app.candidates import version_model_ref, version_unavailable
from lifecycle_app.stages.integrate.app.forms import (
    AppEvaluationForm,
    EvalSetDraftForm,
    EvalSetUploadForm,
    ReviewForm,
)
from lifecycle_app.stages.integrate.app.knowledge import index_location
from lifecycle_app.stages.integrate.app.models import AppEvalSet, ApplicationVersion
from workers.ml.application.params import AppEvalParams, EvalQuestion, EvalVersion

METRICS = (
    ("rougeL", "ROUGE-L"),
    ("exact", "Exact match"),
    ("contains", "Contains reference"),
    ("cited_holds", "Cited chunk holds it"),
    ("fallback_rate", "Fell back"),
)


def _eval_version(version: ApplicationVersion, project: Project) -> EvalVersion:
    reason = version_unavailable(version)
    if reason:
        raise ValueError(f"{version} cannot be evaluated: {reason}")
    path = version_model_ref(version)  # resolved on the worker's host
    config = selectors.version_config(version, project=project)
    return EvalVersion(
        version_id=version.id, label=str(version), model_path=path, config=config.to_dict()
    )


def evaluation_params(
    *, project: Project, eval_set: AppEvalSet, versions: list[ApplicationVersion], k: int
) -> AppEvalParams:
    location = index_location(project=project)
    return AppEvalParams(
        eval_set_id=eval_set.id,
        versions=[_eval_version(v, project) for v in versions],
        questions=[
            EvalQuestion(
                id=q.id,
                question=q.question,
                reference=q.reference,
                document_name=q.document_name,
                passage=q.passage,
            )
            for q in selectors.accepted_questions(eval_set=eval_set)
        ],
        index_folder=location.folder if location else None,
        embedder_path=location.embedder_path if location else None,
        k=k,
    )


def _page(
    request: HtmxHttpRequest, project: Project, membership: Any, **forms: Any
) -> HttpResponse:
    eval_sets = selectors.eval_sets(project=project)
    versions = selectors.project_versions(project=project)
    context = {
        "project": project,
        "membership": membership,
        "eval_sets": eval_sets,
        "evaluations": selectors.app_evaluations(project=project),
        "upload_form": forms.get("upload_form") or EvalSetUploadForm(),
        "draft_form": forms.get("draft_form") or EvalSetDraftForm(versions=versions),
        "run_form": forms.get("run_form")
        or AppEvaluationForm(
            eval_sets=eval_sets,
            versions=versions,
            initial={"versions": [str(v.id) for v in versions[:2]]},
        ),
        "has_index": index_location(project=project) is not None,
        "versions": versions,
    }
    return render(request, "integrate/app/evaluation.html", context)


@login_required
@require_GET
def evaluation_home(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    project, membership = projects_selectors.project_get_for_user(user=request.user, slug=slug)
    return _page(request, project, membership)


@login_required
@require_POST
def evalset_upload(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    project, membership = projects_selectors.project_get_for_user(
        user=request.user, slug=slug, write=True
    )
    form = EvalSetUploadForm(request.POST, request.FILES)
    if form.is_valid():
        upload = form.cleaned_data["file"]
        if upload.size > evalsets.MAX_BYTES:
            form.add_error(
                "file", f"The file is {upload.size} bytes; the limit is {evalsets.MAX_BYTES}."
            )
        else:
            parsed = evalsets.parse(upload.name, upload.read())
            for problem in parsed.problems:
                form.add_error("file", problem)
            if not parsed.problems:
                try:
                    eval_set = services.eval_set_create(
                        project=project,
                        user=authed_user(request),
                        name=form.cleaned_data["name"],
                        rows=parsed.rows,
                    )
                except services.NameTaken as exc:
                    form.add_error("name", str(exc))
                else:
                    messages.success(
                        request, f"Added {len(parsed.rows)} questions as '{eval_set.name}'."
                    )
                    return redirect("app_evaluation", slug=project.slug)
    return _page(request, project, membership, upload_form=form)


@login_required
@require_POST
def evalset_draft(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    project, membership = projects_selectors.project_get_for_user(
        user=request.user, slug=slug, write=True
    )
    versions = selectors.project_versions(project=project)
    form = EvalSetDraftForm(request.POST, versions=versions)
    location = index_location(project=project)
    if form.is_valid() and location is None:
        form.add_error(
            None, "Build the knowledge index first: questions are drafted from its chunks."
        )
    if form.is_valid():
        version = selectors.version_get(
            project=project, version_id=int(form.cleaned_data["version"])
        )
        try:
            eval_set = services.eval_set_create(
                project=project,
                user=authed_user(request),
                name=form.cleaned_data["name"],
                rows=[],
                source="drafted",
            )
            assert location is not None
            params = AppEvalParams(
                mode="draft",
                eval_set_id=eval_set.id,
                versions=[_eval_version(version, project)],
                index_folder=location.folder,
                embedder_path=location.embedder_path,
                n_draft=form.cleaned_data["n"],
            )
            job = services.app_draft_create(
                project=project,
                user=authed_user(request),
                params=params.model_dump(),
                n=form.cleaned_data["n"],
            )
        except (services.NameTaken, ValueError, JobLimitReached) as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(
                request,
                f"Drafting questions (job #{job.id}); review them in '{eval_set.name}' when it is done.",
            )
            return redirect("app_evalset", slug=project.slug, evalset_id=eval_set.id)
    return _page(request, project, membership, draft_form=form)


@login_required
@require_POST
def evaluation_start(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    project, membership = projects_selectors.project_get_for_user(
        user=request.user, slug=slug, write=True
    )
    eval_sets = selectors.eval_sets(project=project)
    versions = selectors.project_versions(project=project)
    form = AppEvaluationForm(request.POST, eval_sets=eval_sets, versions=versions)
    if form.is_valid():
        eval_set = selectors.eval_set_get(
            project=project, set_id=int(form.cleaned_data["eval_set"])
        )
        chosen = [
            selectors.version_get(project=project, version_id=int(v))
            for v in form.cleaned_data["versions"]
        ]
        try:
            params = evaluation_params(
                project=project, eval_set=eval_set, versions=chosen, k=form.cleaned_data["k"]
            )
            if not params.questions:
                raise ValueError(
                    f"'{eval_set.name}' has no accepted questions yet: review its drafted questions first."
                )
            job = services.app_evaluation_create(
                project=project,
                user=authed_user(request),
                eval_set=eval_set,
                versions=chosen,
                params=params.model_dump(),
                n_questions=len(params.questions),
            )
        except (ValueError, JobLimitReached) as exc:
            form.add_error(None, str(exc))
        else:
            return redirect("app_scorecard", slug=project.slug, app_eval_id=job.id)
    return _page(request, project, membership, run_form=form)


@login_required
@require_GET
def evalset_detail(request: HtmxHttpRequest, slug: str, evalset_id: int) -> HttpResponse:
    project, membership = projects_selectors.project_get_for_user(user=request.user, slug=slug)
    eval_set = selectors.eval_set_get(project=project, set_id=evalset_id)
    context = {
        "project": project,
        "membership": membership,
        "eval_set": eval_set,
        "questions": list(eval_set.questions.order_by("position")),
        "draft_jobs": Job.objects.filter(
            project=project, params__mode="draft", params__eval_set_id=eval_set.id
        ).order_by("-id")[:3],
    }
    return render(request, "integrate/app/evalset.html", context)


@login_required
@require_POST
def question_review(request: HtmxHttpRequest, slug: str, question_id: int) -> HttpResponse:
    project, membership = projects_selectors.project_get_for_user(
        user=request.user, slug=slug, write=True
    )
    question = selectors.question_get(project=project, question_id=question_id)
    form = ReviewForm(request.POST)
    if form.is_valid():
        services.question_review(
            question=question,
            action=form.cleaned_data["action"],
            text=form.cleaned_data["question"],
            reference=form.cleaned_data["reference"],
        )
    if request.htmx:
        return render(
            request,
            "integrate/app/evalset.html#question",
            {"project": project, "membership": membership, "q": question},
        )
    return redirect("app_evalset", slug=project.slug, evalset_id=question.eval_set_id)


def scorecard_rows(job: Job) -> dict[str, Any]:
    """The result laid out for the template: per retriever, and per version with and
    without retrieval side by side."""
    result = job.result or {}
    retrieval = [
        {"mode": mode, **(result.get("retrieval") or {}).get(mode, {})}
        for mode in ("bm25", "dense", "hybrid")
        if mode in (result.get("retrieval") or {})
    ]
    versions = []
    for v in result.get("versions") or []:
        cells = []
        for key, label in METRICS:
            with_r = (v.get("with") or {}).get(key)
            without = (v.get("without") or {}).get(key)
            change = (
                round(with_r - without, 6) if with_r is not None and without is not None else None
            )
            cells.append(
                {"key": key, "label": label, "with": with_r, "without": without, "change": change}
            )
        versions.append({"label": v["label"], "version_id": v["version_id"], "cells": cells})
    return {
        "retrieval": retrieval,
        "versions": versions,
        "k": result.get("k"),
        "questions": result.get("questions"),
    }


@login_required
@require_GET
def app_scorecard(request: HtmxHttpRequest, slug: str, app_eval_id: int) -> HttpResponse:
    project, membership = projects_selectors.project_get_for_user(user=request.user, slug=slug)
    job = selectors.app_evaluation_get(project=project, job_id=app_eval_id)
    context = {
        "project": project,
        "membership": membership,
        "job": job,
        "card": scorecard_rows(job),
        "answers": selectors.app_answers(job=job, limit=200) if not job.is_active else [],
    }
    return render(
        request,
        "integrate/app/scorecard.html#page" if request.htmx else "integrate/app/scorecard.html",
        context,
    )
