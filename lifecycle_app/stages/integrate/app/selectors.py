"""Reads of the application stage. Every lookup is scoped to a project."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Q, QuerySet
from django.http import Http404

from lifecycle_app.jobs.models import Job, JobKind, JobStatus
from lifecycle_app.projects.models import Project
from lifecycle_app.stages.integrate.app import knowledge
from lifecycle_app.stages.integrate.app.models import (
    AppEvalAnswer,
    AppEvalQuestion,
    AppEvalSet,
    Application,
    ApplicationVersion,
    FallbackQuestion,
    QuestionStatus,
    ReasoningAid,
    RetrievalMode,
)
from workers.ml.application.config import AppConfig


def app_list(*, project: Project) -> QuerySet[Application]:
    return (
        Application.objects.filter(project=project)
        .annotate(n_versions=Count("versions"))
        .order_by("name")
    )


def app_get(*, project: Project, app_id: int) -> Application:
    app = Application.objects.filter(project=project, id=app_id).first()
    if app is None:
        raise Http404("No such application.")
    return app


def versions_of(*, application: Application) -> list[ApplicationVersion]:
    return list(
        application.versions.select_related(
            "application", "model", "variant", "created_by"
        ).order_by("-number")
    )


def project_versions(*, project: Project) -> list[ApplicationVersion]:
    return list(
        ApplicationVersion.objects.filter(application__project=project)
        .select_related("application", "model", "variant")
        .order_by("application__name", "-number")
    )


def version_get(*, project: Project, version_id: int) -> ApplicationVersion:
    version = (
        ApplicationVersion.objects.filter(application__project=project, id=version_id)
        .select_related("application", "model", "variant")
        .first()
    )
    if version is None:
        raise Http404("No such application version.")
    return version


def version_config(version: ApplicationVersion, *, project: Project) -> AppConfig:
    """The worker's settings for this version, with the project's index where retrieval
    is on."""
    location = knowledge.index_location(project=project) if version.retrieval != "off" else None
    return AppConfig(
        template=version.template,
        retrieval=version.retrieval,  # type: ignore[arg-type]
        top_k=version.top_k,
        threshold=version.threshold,
        cite=version.cite,
        reasoning=version.reasoning,  # type: ignore[arg-type]
        fallback_min_score=version.fallback_min_score,
        max_new_tokens=version.max_new_tokens,
        index_folder=location.folder if location else None,
        embedder_path=location.embedder_path if location else None,
    )


def fallback_list(
    *, project: Project, waiting: bool = True, limit: int = 100
) -> list[FallbackQuestion]:
    qs = FallbackQuestion.objects.filter(version__application__project=project)
    if waiting:
        qs = qs.filter(handled_at__isnull=True)
    return list(qs.select_related("version", "version__application", "handled_by")[:limit])


def fallback_get(*, project: Project, item_id: int) -> FallbackQuestion:
    item = FallbackQuestion.objects.filter(
        version__application__project=project, id=item_id
    ).first()
    if item is None:
        raise Http404("No such question.")
    return item


def eval_sets(*, project: Project) -> list[AppEvalSet]:
    return list(
        AppEvalSet.objects.filter(project=project).annotate(
            n_accepted=Count("questions", filter=Q(questions__status=QuestionStatus.ACCEPTED)),
            n_pending=Count("questions", filter=Q(questions__status=QuestionStatus.PENDING)),
            n_total=Count("questions"),
        )
    )


def eval_set_get(*, project: Project, set_id: int) -> AppEvalSet:
    eval_set = AppEvalSet.objects.filter(project=project, id=set_id).first()
    if eval_set is None:
        raise Http404("No such evaluation set.")
    return eval_set


def question_get(*, project: Project, question_id: int) -> AppEvalQuestion:
    q = AppEvalQuestion.objects.filter(eval_set__project=project, id=question_id).first()
    if q is None:
        raise Http404("No such question.")
    return q


def accepted_questions(*, eval_set: AppEvalSet) -> list[AppEvalQuestion]:
    return list(eval_set.questions.filter(status=QuestionStatus.ACCEPTED).order_by("position"))


def app_evaluations(*, project: Project, limit: int = 20) -> list[Job]:
    return list(
        Job.objects.filter(project=project, kind=JobKind.APP_EVALUATE)
        .exclude(params__mode="draft")
        .select_related("created_by")
        .order_by("-created_at", "-id")[:limit]
    )


def app_evaluation_get(*, project: Project, job_id: int) -> Job:
    job = Job.objects.filter(project=project, kind=JobKind.APP_EVALUATE, id=job_id).first()
    if job is None:
        raise Http404("No such app evaluation.")
    return job


def app_answers(*, job: Job, limit: int = 500) -> list[AppEvalAnswer]:
    return list(AppEvalAnswer.objects.filter(job=job).select_related("question")[:limit])


@dataclass(frozen=True)
class IntegrateStatus:
    """What the checklist reads: what is set up, from the records themselves."""

    index_ready: bool
    index_note: str
    app_evaluated: Job | None
    versions: int
    reasoning_versions: dict[str, int]
    fallback_rule: bool
    fallback_waiting: int


def integrate_status(*, project: Project) -> IntegrateStatus:
    location = knowledge.index_location(project=project)
    versions = ApplicationVersion.objects.filter(application__project=project)
    reasoning = dict(
        versions.values_list("reasoning").annotate(n=Count("id")).values_list("reasoning", "n")
    )
    evaluated = (
        Job.objects.filter(project=project, kind=JobKind.APP_EVALUATE, status=JobStatus.SUCCEEDED)
        .exclude(params__mode="draft")
        .order_by("-finished_at", "-id")
        .first()
    )
    rule = versions.filter(
        Q(fallback_min_score__isnull=False) | ~Q(retrieval=RetrievalMode.OFF)
    ).exists()
    waiting = FallbackQuestion.objects.filter(
        version__application__project=project, handled_at__isnull=True
    ).count()
    return IntegrateStatus(
        index_ready=location is not None,
        index_note=location.note if location else "",
        app_evaluated=evaluated,
        versions=versions.count(),
        reasoning_versions={ReasoningAid(k).label: n for k, n in reasoning.items()},
        fallback_rule=rule,
        fallback_waiting=waiting,
    )


def result_rows(job: Job) -> dict[str, Any]:
    """An app evaluation's result as the scorecard shows it."""
    return dict(job.result or {})


def deployed_version(*, project: Project) -> ApplicationVersion | None:
    return (
        ApplicationVersion.objects.filter(application__project=project, deployed_at__isnull=False)
        .select_related("application")
        .first()
    )


def deployed_app_payload(*, project: Project) -> dict[str, Any] | None:
    """What the API's serving worker needs to answer with the deployed application:
    {"name", "version_id", "config"} (config: `AppConfig.to_dict()`), or None."""
    version = deployed_version(project=project)
    if version is None:
        return None
    from django.utils.text import slugify

    return {
        "name": slugify(version.application.name) or f"app-{version.application_id}",
        "version_id": version.id,
        "config": version_config(version, project=project).to_dict(),
    }
