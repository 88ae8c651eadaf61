"""Evaluation: every candidate over the same rows, per-candidate errors recorded."""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

from django.conf import settings

from lifecycle_app.jobs import services as job_services
from lifecycle_app.jobs.models import Job
from lifecycle_app.stages.evaluate import candidates as evaluating
from lifecycle_app.stages.evaluate import reuse
from lifecycle_app.stages.evaluate import services as ev
from lifecycle_app.stages.evaluate.models import CandidateStatus, EvaluationCandidate
from lifecycle_app.stages.evaluate.services import candidate_record_batch
from lifecycle_app.stages.prompt.building import PromptingError
from workers.ml.errors import UserFacingError
from workers.ml.loading import ModelSpec
from workers.tasks.base import job_task

logger = logging.getLogger(__name__)

EVALUATE_SOFT_LIMIT_S = 3 * 3600  # below celery.VISIBILITY_TIMEOUT_S (4 h)


def _record_eval_batch(outcomes: list[Any], stats: Any, *, job_id: int, candidate_id: int) -> None:

    candidate_record_batch(job_id=job_id, candidate_id=candidate_id, outcomes=outcomes, stats=stats)


def _evaluate(job: Job) -> None:
    """Each candidate in turn over the same rows; one that cannot run is marked
    unavailable (or failed, with the error) and the others still run."""
    from django.db.models import F

    from workers.ml import errors as ml_errors
    from workers.ml import loading as ml_loading
    from workers.ml.evaluation.general import run_general
    from workers.ml.evaluation.runner import reuse_outputs, run_candidate
    from workers.ml.params import EvaluateParams

    params = EvaluateParams(**job.params)
    if job.dataset is None:
        raise UserFacingError("The dataset of this evaluation was deleted.")
    try:
        rows = evaluating.eval_rows(job.dataset, params)
    except PromptingError as exc:
        raise UserFacingError(str(exc)) from exc
    candidates = list(
        EvaluationCandidate.objects.filter(job=job).select_related(
            "base_model", "base_model__trained_by_job", "source_job"
        )
    )
    Job.objects.filter(id=job.id).update(
        progress_done=0, progress_total=len(rows) * len(candidates)
    )
    general: dict[tuple[str, str], dict[str, float]] = {}

    def cancel() -> bool:
        return job_services.job_cancel_requested(job_id=job.id)

    scored = 0

    def skip(candidate: EvaluationCandidate, status: CandidateStatus, reason: str) -> None:
        ev.candidate_mark(candidate_id=candidate.id, status=status, reason=reason)
        Job.objects.filter(id=job.id).update(progress_done=F("progress_done") + len(rows))

    same_as = reuse.duplicates(candidates)
    for n, candidate in enumerate(candidates, start=1):
        step = f"Candidate {n} of {len(candidates)}: {candidate.label}"
        reason = evaluating.candidate_unavailable(candidate)
        if reason:
            skip(candidate, CandidateStatus.UNAVAILABLE, reason)
            continue
        twin = same_as.get(candidate.id)
        if twin is not None and _scored(twin):
            # The same model, prompt and settings ran already: its rows are these rows.
            reuse.candidate_copy(source=twin, target=candidate)
            Job.objects.filter(id=job.id).update(progress_done=F("progress_done") + len(rows))
            scored += 1
            continue
        assert candidate.base_model is not None
        spec = ev.candidate_spec(candidate)
        try:
            prompts = evaluating.build_candidate_prompts(
                model=candidate.base_model,
                dataset=job.dataset,
                spec=spec,
                rows=rows,
                split=params.split,
            )
            ev.candidate_start(candidate_id=candidate.id, prompts=prompts)
            job_services.job_progress_message(job_id=job.id, message=f"{step}: loading")
            model_spec = ModelSpec(
                source=candidate.base_model.source,  # type: ignore[arg-type]
                location=candidate.base_model.location,
            )
            loaded = ml_loading.load(model_spec, Path(settings.MODELS_DIR))
        except (PromptingError, ml_errors.ModelNotAvailable) as exc:
            skip(candidate, CandidateStatus.UNAVAILABLE, str(exc))
            continue
        reused = reuse.trial_outputs(candidate, prompts)
        note: dict[str, Any] = {}
        try:
            if reused is not None and candidate.source_job_id is not None:
                job_services.job_progress_message(
                    job_id=job.id, message=f"{step}: reusing trial #{candidate.source_job_id}"
                )
                reuse.candidate_record_reused(
                    job_id=job.id,
                    candidate_id=candidate.id,
                    outcomes=list(reused.values()),
                    trial_id=candidate.source_job_id,
                )
                Job.objects.filter(id=job.id).update(progress_done=F("progress_done") + len(rows))
                note = {"reused_from_trial": candidate.source_job_id}
                result = reuse_outputs(
                    loaded, prompts, reused, task=params.task, should_cancel=cancel
                )
            else:
                job_services.job_progress_message(job_id=job.id, message=f"{step}: generating")
                result = run_candidate(
                    loaded,
                    prompts,
                    spec.generation,
                    task=params.task,
                    batch_size=params.batch_size,
                    on_batch=functools.partial(
                        _record_eval_batch, job_id=job.id, candidate_id=candidate.id
                    ),
                    should_cancel=cancel,
                )
            if result.cancelled:
                ev.candidate_mark(candidate_id=candidate.id, status=CandidateStatus.CANCELLED)
                job_services.job_mark_cancelled(job_id=job.id, result={"scored": scored})
                return
            if result.stats.rows_done == 0:
                ev.candidate_mark(
                    candidate_id=candidate.id,
                    status=CandidateStatus.FAILED,
                    reason="No row could be generated; see the rows.",
                )
                continue
            ev.candidate_finish(candidate_id=candidate.id, result=result, note=note)
            scored += 1
            if params.general_check:
                # Forgetting is a property of the weights: one run per model.
                key = (model_spec.source, model_spec.location)
                if key not in general:
                    job_services.job_progress_message(
                        job_id=job.id, message=f"{step}: general-ability check"
                    )
                    outcome = run_general(loaded, should_cancel=cancel)
                    if outcome.cancelled:
                        job_services.job_mark_cancelled(job_id=job.id, result={"scored": scored})
                        return
                    general[key] = outcome.scores
                ev.candidate_general(candidate_id=candidate.id, scores=general[key])
        except Exception as exc:  # one candidate's crash must not lose the others
            logger.exception("Evaluation %s: candidate %s failed", job.id, candidate.id)
            ev.candidate_mark(
                candidate_id=candidate.id,
                status=CandidateStatus.FAILED,
                reason=f"{type(exc).__name__}: {exc}",
            )
    if scored == 0:
        raise UserFacingError("No candidate could be scored: see each candidate's reason.")
    job_services.job_succeed(
        job_id=job.id,
        result={"scored": scored, "candidates": len(candidates), "rows": len(rows)},
        message=f"Scored {scored} of {len(candidates)} candidates on {len(rows)} rows",
    )
    ev.evaluation_finished(job=job)


def _scored(candidate: EvaluationCandidate) -> bool:
    candidate.refresh_from_db(fields=["status"])
    return candidate.status == CandidateStatus.DONE


evaluate_job = job_task(
    _evaluate,
    name="jobs.evaluate",
    soft_time_limit=EVALUATE_SOFT_LIMIT_S,
    time_limit=EVALUATE_SOFT_LIMIT_S + 120,
)
