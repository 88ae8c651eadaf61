"""Evaluation jobs: create (candidates written as rows up front), then the worker's writes
per candidate (rows pending, batches, final scores, unavailable, failed)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import F

from lifecycle_app.catalog.models import CatalogModel
from lifecycle_app.datasets.models import Dataset
from lifecycle_app.jobs.models import Job, JobKind
from lifecycle_app.jobs.services import job_create
from lifecycle_app.projects.models import Project, StageKey
from lifecycle_app.projects.services import stage_step_save
from lifecycle_app.projects.steps import StepSlug
from lifecycle_app.stages.evaluate.models import (
    CandidateStatus,
    EvaluationCandidate,
    EvaluationExample,
)
from lifecycle_app.stages.prompt.models import ExampleStatus
from workers.ml.evaluation.runner import CandidateResult
from workers.ml.generation.batch import RowOutcome, TrialStats
from workers.ml.params import CandidateSpec, EvaluateParams
from workers.ml.prompts import BuiltPrompt


def evaluation_create(
    *,
    project: Project,
    user: User,
    dataset: Dataset,
    params: EvaluateParams,
    sources: Sequence[tuple[CatalogModel | None, Job | None]],
    rows: int,
) -> Job:
    """Queue an evaluation of `params.candidates` (`sources[i]`: the model and source job
    of candidate i) over `rows` rows each. Raises JobLimitReached, creating nothing."""
    with transaction.atomic():
        job = job_create(
            project=project,
            user=user,
            kind=JobKind.EVALUATE,
            dataset=dataset,
            params=params.model_dump(),
            progress_total=rows * len(params.candidates),
            progress_unit="rows",
        )
        EvaluationCandidate.objects.bulk_create(
            EvaluationCandidate(
                job=job,
                position=i,
                label=spec.label,
                kind=spec.kind,
                base_model=model,
                source_job=source,
                spec=spec.model_dump(),
            )
            for i, (spec, (model, source)) in enumerate(
                zip(params.candidates, sources, strict=True)
            )
        )
        stage_step_save(
            project=project,
            stage_key=StageKey.ADAPT,
            step_slug=StepSlug.EVALUATE,
            answers={"last_evaluation": job.id},
        )
    return job


def candidate_spec(candidate: EvaluationCandidate) -> CandidateSpec:
    return CandidateSpec(**candidate.spec)


# --- Worker side ------------------------------------------------------------------------


def candidate_mark(
    *, candidate_id: int, status: CandidateStatus, reason: str = "", **fields: Any
) -> None:
    EvaluationCandidate.objects.filter(id=candidate_id).update(
        status=status, reason=reason[:2000], **fields
    )


@transaction.atomic
def candidate_start(*, candidate_id: int, prompts: Sequence[BuiltPrompt]) -> None:
    """Write every row pending before generation; a retried job starts the candidate over."""
    EvaluationExample.objects.filter(candidate_id=candidate_id).delete()
    EvaluationExample.objects.bulk_create(
        EvaluationExample(
            candidate_id=candidate_id,
            index=p.index,
            line=p.line,
            input=p.input,
            prompt=p.text,
            reference=p.reference,
            status=ExampleStatus.SKIPPED if p.skipped else ExampleStatus.PENDING,
            error=p.skipped,
        )
        for p in prompts
    )
    candidate_mark(
        candidate_id=candidate_id, status=CandidateStatus.RUNNING, scores={}, general_scores={}
    )


@transaction.atomic
def candidate_record_batch(
    *, job_id: int, candidate_id: int, outcomes: Sequence[RowOutcome], stats: TrialStats
) -> None:
    """One batch's outputs (live scores) and the job's measured progress."""
    for o in outcomes:
        EvaluationExample.objects.filter(candidate_id=candidate_id, index=o.index).update(
            status=o.status,
            output=o.output,
            output_tokens=o.output_tokens,
            finish_reason=o.finish_reason,
            scores=o.scores,
            error=o.error,
        )
    EvaluationCandidate.objects.filter(id=candidate_id).update(stats=stats.as_dict())
    Job.objects.filter(id=job_id).update(progress_done=F("progress_done") + len(outcomes))


@transaction.atomic
def candidate_finish(
    *, candidate_id: int, result: CandidateResult, note: dict[str, Any] | None = None
) -> None:
    """Final per-row scores (every metric) and the candidate's figures (`note`: what the
    page should say about how they were obtained, e.g. reused from a trial)."""
    for o in result.rows:
        if o.status == "done":
            EvaluationExample.objects.filter(candidate_id=candidate_id, index=o.index).update(
                scores=o.scores
            )
    candidate_mark(
        candidate_id=candidate_id,
        status=CandidateStatus.DONE,
        scores=result.scores,
        stats={**result.stats.as_dict(), **(note or {})},
    )


def candidate_general(*, candidate_id: int, scores: dict[str, float]) -> None:
    EvaluationCandidate.objects.filter(id=candidate_id).update(general_scores=scores)


def evaluation_finished(*, job: Job) -> None:
    stage_step_save(
        project=job.project,
        stage_key=StageKey.ADAPT,
        step_slug=StepSlug.EVALUATE,
        answers={"succeeded_evaluation": job.id},
    )
