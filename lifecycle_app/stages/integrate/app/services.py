"""Writes of the application stage: applications and their versions, questions handed to
a person, evaluation sets and app evaluations (the job and what its task records)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from lifecycle_app.jobs.models import Job, JobKind
from lifecycle_app.jobs.services import job_create
from lifecycle_app.projects.activity import activity_record
from lifecycle_app.projects.models import ActivityVerb, Project
from lifecycle_app.stages.integrate.app.candidates import ModelOption
from lifecycle_app.stages.integrate.app.models import (
    VERSION_FIELDS,
    AppEvalAnswer,
    AppEvalQuestion,
    AppEvalSet,
    Application,
    ApplicationVersion,
    FallbackQuestion,
    QuestionStatus,
)


class NameTaken(ValueError):
    pass


def _record(project: Project | int, user: User | None, description: str) -> None:
    activity_record(
        project=project, actor=user, verb=ActivityVerb.STEP_SAVED, description=description
    )


def _model_fields(option: ModelOption) -> dict[str, Any]:
    return {
        "candidate_kind": option.kind,
        "model": option.model,
        "variant": option.variant,
        "model_label": option.label[:200],
    }


def application_create(
    *, project: Project, user: User, name: str, option: ModelOption, fields: dict[str, Any]
) -> ApplicationVersion:
    """A new application with its version 1."""
    name = name.strip()
    if Application.objects.filter(project=project, name=name).exists():
        raise NameTaken(f"An application called '{name}' exists; save a new version of it instead.")
    try:
        with transaction.atomic():
            app = Application.objects.create(project=project, name=name, created_by=user)
            version = ApplicationVersion.objects.create(
                application=app,
                number=1,
                created_by=user,
                **_model_fields(option),
                **{k: fields[k] for k in VERSION_FIELDS},
                note=fields.get("note", ""),
            )
            _record(project, user, f"created application '{name}' (v1)")
    except IntegrityError as exc:
        raise NameTaken(f"An application called '{name}' was just created.") from exc
    return version


@transaction.atomic
def version_save(
    *, application: Application, user: User, option: ModelOption, fields: dict[str, Any]
) -> ApplicationVersion:
    """Save the settings as the next version ("Save as new version"); settings equal to
    the latest version's make no new version."""
    Application.objects.select_for_update().filter(id=application.id).first()
    latest = application.versions.order_by("-number").first()
    values = {k: fields[k] for k in VERSION_FIELDS}
    model_fields = _model_fields(option)
    same_model = latest is not None and (latest.model_id, latest.variant_id) == (
        getattr(option.model, "id", None),
        getattr(option.variant, "id", None),
    )
    if (
        latest is not None
        and same_model
        and all(getattr(latest, k) == v for k, v in values.items())
    ):
        return latest
    top = application.versions.aggregate(top=Max("number"))["top"] or 0
    version = ApplicationVersion.objects.create(
        application=application,
        number=top + 1,
        created_by=user,
        note=fields.get("note", ""),
        **model_fields,
        **values,
    )
    _record(
        application.project_id, user, f"saved application '{application.name}' v{version.number}"
    )
    return version


def fallback_record(
    *, version: ApplicationVersion, question: str, reason: str, source: str = "playground"
) -> FallbackQuestion:
    """A question the application did not answer, kept for a person to review."""
    return FallbackQuestion.objects.create(
        version=version, question=question[:4000], reason=reason[:300], source=source
    )


def fallback_mark_handled(
    *, item: FallbackQuestion, user: User, note: str = ""
) -> FallbackQuestion:
    if item.handled_at is None:
        item.handled_at = timezone.now()
        item.handled_by = user
        item.note = note[:500]
        item.save(update_fields=["handled_at", "handled_by", "note"])
    return item


def eval_set_create(
    *,
    project: Project,
    user: User | None,
    name: str,
    rows: Sequence[dict[str, str]],
    source: str = "upload",
    status: str = QuestionStatus.ACCEPTED,
) -> AppEvalSet:
    name = name.strip()
    if AppEvalSet.objects.filter(project=project, name=name).exists():
        raise NameTaken(f"An evaluation set called '{name}' exists; pick another name.")
    with transaction.atomic():
        eval_set = AppEvalSet.objects.create(
            project=project, name=name, source=source, created_by=user
        )
        _questions_add(eval_set=eval_set, rows=rows, status=status, drafted=source == "drafted")
        _record(project, user, f"added the app evaluation set '{name}' ({len(rows)} questions)")
    return eval_set


def _questions_add(
    *, eval_set: AppEvalSet, rows: Sequence[dict[str, str]], status: str, drafted: bool
) -> None:
    start = (eval_set.questions.aggregate(top=Max("position"))["top"] or 0) + 1
    AppEvalQuestion.objects.bulk_create(
        AppEvalQuestion(
            eval_set=eval_set,
            position=start + i,
            question=r["question"],
            reference=r["reference"],
            document_name=r.get("document_name", "")[:255],
            passage=r.get("passage", ""),
            status=status,
            drafted=drafted,
        )
        for i, r in enumerate(rows)
    )


def drafted_questions_add(*, eval_set_id: int, rows: Sequence[dict[str, str]]) -> None:
    """Questions the model drafted: pending until a person accepts them (the draft job)."""
    eval_set = AppEvalSet.objects.get(id=eval_set_id)
    _questions_add(eval_set=eval_set, rows=rows, status=QuestionStatus.PENDING, drafted=True)


def question_review(
    *, question: AppEvalQuestion, action: str, text: str = "", reference: str = ""
) -> AppEvalQuestion:
    """Accept (optionally with edits) or reject one question."""
    if action == "reject":
        question.status = QuestionStatus.REJECTED
    elif action == "accept":
        question.status = QuestionStatus.ACCEPTED
        question.question = text.strip() or question.question
        question.reference = reference.strip() or question.reference
    else:
        raise ValueError(f"Unknown review action {action!r}.")
    question.save(update_fields=["status", "question", "reference"])
    return question


def app_evaluation_create(
    *,
    project: Project,
    user: User,
    eval_set: AppEvalSet,
    versions: Sequence[ApplicationVersion],
    params: dict[str, Any],
    n_questions: int,
) -> Job:
    """An app evaluation job: every version over the accepted questions, with and without
    retrieval (`params` is the task's `AppEvalParams` as JSON)."""
    runs = sum(2 if v.retrieval != "off" else 1 for v in versions)
    return job_create(
        project=project,
        user=user,
        kind=JobKind.APP_EVALUATE,
        params=params,
        progress_total=n_questions * runs,
        progress_unit="answers",
    )


def app_draft_create(*, project: Project, user: User, params: dict[str, Any], n: int) -> Job:
    """A drafting job: the model writes `n` questions from chunks into a new, pending set
    (the same job kind as app evaluations, mode "draft")."""
    return job_create(
        project=project,
        user=user,
        kind=JobKind.APP_EVALUATE,
        params=params,
        progress_total=n,
        progress_unit="questions",
    )


def app_answers_record(*, job_id: int, answers: Sequence[dict[str, Any]]) -> None:
    """Answers of one question (the task writes them through `run.write`); idempotent by
    (job, index), so a redelivered task overwrites what it wrote before."""
    for a in answers:
        AppEvalAnswer.objects.update_or_create(
            job_id=job_id,
            index=a["index"],
            defaults={k: v for k, v in a.items() if k not in ("index",)},
        )


@transaction.atomic
def version_deploy(*, version: ApplicationVersion, user: User) -> ApplicationVersion:
    """Make `version` the one the project's API answers with (its own model, template,
    retrieval and reasoning aid: what the playground showed); any other deployed version
    of the project is withdrawn."""
    project_id = version.application.project_id
    ApplicationVersion.objects.select_for_update().filter(application__project_id=project_id)
    ApplicationVersion.objects.filter(
        application__project_id=project_id, deployed_at__isnull=False
    ).exclude(id=version.id).update(deployed_at=None)
    if version.deployed_at is None:
        version.deployed_at = timezone.now()
        version.save(update_fields=["deployed_at"])
        _record(project_id, user, f"deployed application '{version}' on the API")
    return version
