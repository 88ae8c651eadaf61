"""Evaluation reads: evaluations, their candidates and per-row outputs."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import Http404

from lifecycle_app.jobs.models import Job, JobKind
from lifecycle_app.projects.models import Project
from lifecycle_app.projects.selectors import MAX_ID
from lifecycle_app.stages.evaluate import scorecard
from lifecycle_app.stages.evaluate.models import EvaluationCandidate, EvaluationExample


def _evaluations(project: Project) -> QuerySet[Job]:
    return Job.objects.select_related("dataset", "created_by", "project").filter(
        project=project, kind=JobKind.EVALUATE
    )


def evaluation_list(*, project: Project, limit: int = 50) -> list[Job]:
    return list(_evaluations(project).order_by("-created_at", "-id")[:limit])


def evaluation_get(*, project: Project, job_id: int) -> Job:
    if not 0 < job_id <= MAX_ID:
        raise Http404("No such evaluation.")
    job = _evaluations(project).filter(id=job_id).first()
    if job is None:
        raise Http404("No such evaluation.")
    return job


def evaluation_latest(*, project: Project) -> Job | None:
    """The newest evaluation that scored something, else the newest at all."""
    evaluations = _evaluations(project).order_by("-created_at", "-id")
    return evaluations.filter(eval_candidates__status="done").first() or evaluations.first()


def evaluation_candidates(*, job: Job) -> list[EvaluationCandidate]:
    return list(
        EvaluationCandidate.objects.filter(job=job)
        .select_related("base_model", "source_job")
        .order_by("position")
    )


def evaluation_examples(*, candidate: EvaluationCandidate) -> list[EvaluationExample]:
    return list(EvaluationExample.objects.filter(candidate=candidate).order_by("index"))


def evaluation_all_examples(*, job: Job) -> list[EvaluationExample]:
    return list(
        EvaluationExample.objects.filter(candidate__job=job).order_by(
            "candidate__position", "index"
        )
    )


def evaluation_leader(
    *, project: Project, scope: dict[str, Any]
) -> tuple[Job, scorecard.Scorecard, scorecard.Row | None] | None:
    """The latest scored evaluation, its scorecard against the Scope target, and its best
    candidate other than the baseline (None: no evaluation has scored anything)."""
    job = evaluation_latest(project=project)
    if job is None:
        return None
    card = scorecard.build(
        evaluation_candidates(job=job), task=job.params.get("task", "text"), scope=scope
    )
    return job, card, scorecard.leader(card)
