"""Evaluation: every candidate over the same rows, per-candidate errors recorded."""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

from django.conf import settings

from lifecycle_app.jobs import services as job_services
from lifecycle_app.jobs.fencing import is_transient_db_error
from lifecycle_app.jobs.models import Job
from lifecycle_app.stages.evaluate import candidates as evaluating
from lifecycle_app.stages.evaluate import reuse
from lifecycle_app.stages.evaluate import services as ev
from lifecycle_app.stages.evaluate.models import CandidateStatus, EvaluationCandidate
from lifecycle_app.stages.evaluate.services import candidate_record_batch
from lifecycle_app.stages.prompt.building import PromptingError
from lifecycle_app.storage.models import loadable_spec
from workers.ml.errors import JobInterrupted, UserFacingError
from workers.tasks.base import JobRun, job_task

logger = logging.getLogger(__name__)

EVALUATE_SOFT_LIMIT_S = 3 * 3600  # below celery.VISIBILITY_TIMEOUT_S (4 h)


def _record_eval_batch(outcomes: list[Any], stats: Any, *, run: JobRun, candidate_id: int) -> None:
    run.write(
        candidate_record_batch,
        job_id=run.job_id,
        candidate_id=candidate_id,
        outcomes=outcomes,
        stats=stats,
    )


def _progress_reset(*, job_id: int, total: int) -> None:
    Job.objects.filter(id=job_id).update(progress_done=0, progress_total=total)


def _evaluation_succeed(*, job: Job, result: dict[str, Any], message: str) -> None:
    """Succeed the job and save the step in one transaction: either both hold or neither."""
    if job_services.job_succeed(job_id=job.id, result=result, message=message):
        ev.evaluation_finished(job=job)


def _evaluate(job: Job, run: JobRun) -> None:
    """Each candidate in turn over the same rows; one that cannot run is marked
    unavailable (or failed, with the error) and the others still run."""
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
    run.write(_progress_reset, job_id=job.id, total=len(rows) * len(candidates))
    general: dict[tuple[str, str], dict[str, float]] = {}

    cancel = run.should_cancel

    scored = 0

    def skip(candidate: EvaluationCandidate, status: CandidateStatus, reason: str) -> None:
        run.write(ev.candidate_mark, candidate_id=candidate.id, status=status, reason=reason)
        run.write(job_services.job_progress_add, job_id=job.id, done=len(rows))

    same_as = reuse.duplicates(candidates)
    for n, candidate in enumerate(candidates, start=1):
        step = f"Candidate {n} of {len(candidates)}: {candidate.label}"
        reason = evaluating.candidate_unavailable(candidate)
        if reason:
            skip(candidate, CandidateStatus.UNAVAILABLE, reason)
            continue
        twin = same_as.get(candidate.id)
        if twin is not None and _scored(twin, run):
            # The same model, prompt and settings ran already: its rows are these rows.
            run.write(reuse.candidate_copy, source=twin, target=candidate)
            run.write(job_services.job_progress_add, job_id=job.id, done=len(rows))
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
            run.write(ev.candidate_start, candidate_id=candidate.id, prompts=prompts)
            run.write(job_services.job_progress_message, job_id=job.id, message=f"{step}: loading")
            model_spec = loadable_spec(  # a store key is fetched through the cache
                candidate.base_model,
                Path(settings.MODELS_DIR),
                Path(settings.CACHE_DIR) / "views",
            )
            loaded = ml_loading.load(model_spec, Path(settings.MODELS_DIR))
        except (PromptingError, ml_errors.ModelNotAvailable) as exc:
            skip(candidate, CandidateStatus.UNAVAILABLE, str(exc))
            continue
        reused = reuse.trial_outputs(candidate, prompts)
        note: dict[str, Any] = {}
        try:
            if reused is not None and candidate.source_job_id is not None:
                run.write(
                    job_services.job_progress_message,
                    job_id=job.id,
                    message=f"{step}: reusing trial #{candidate.source_job_id}",
                )
                run.write(
                    reuse.candidate_record_reused,
                    job_id=job.id,
                    candidate_id=candidate.id,
                    outcomes=list(reused.values()),
                    trial_id=candidate.source_job_id,
                )
                run.write(job_services.job_progress_add, job_id=job.id, done=len(rows))
                note = {"reused_from_trial": candidate.source_job_id}
                result = reuse_outputs(
                    loaded, prompts, reused, task=params.task, should_cancel=cancel
                )
            else:
                run.write(
                    job_services.job_progress_message, job_id=job.id, message=f"{step}: generating"
                )
                result = run_candidate(
                    loaded,
                    prompts,
                    spec.generation,
                    task=params.task,
                    batch_size=params.batch_size,
                    on_batch=functools.partial(
                        _record_eval_batch, run=run, candidate_id=candidate.id
                    ),
                    should_cancel=cancel,
                )
            if result.cancelled:
                run.write(
                    ev.candidate_mark, candidate_id=candidate.id, status=CandidateStatus.CANCELLED
                )
                run.write(job_services.job_mark_cancelled, job_id=job.id, result={"scored": scored})
                return
            if result.stats.rows_done == 0:
                run.write(
                    ev.candidate_mark,
                    candidate_id=candidate.id,
                    status=CandidateStatus.FAILED,
                    reason="No row could be generated; see the rows.",
                )
                continue
            run.write(ev.candidate_finish, candidate_id=candidate.id, result=result, note=note)
            scored += 1
            if params.general_check:
                # Forgetting is a property of the weights: one run per model.
                key = (model_spec.source, model_spec.location)
                if key not in general:
                    run.write(
                        job_services.job_progress_message,
                        job_id=job.id,
                        message=f"{step}: general-ability check",
                    )
                    outcome = run_general(loaded, should_cancel=cancel)
                    if outcome.cancelled:
                        run.write(
                            job_services.job_mark_cancelled,
                            job_id=job.id,
                            result={"scored": scored},
                        )
                        return
                    general[key] = outcome.scores
                run.write(ev.candidate_general, candidate_id=candidate.id, scores=general[key])
        except JobInterrupted:  # fenced, or the database is away: not the candidate's fault
            raise
        except Exception as exc:  # one candidate's crash must not lose the others
            if is_transient_db_error(exc):
                raise
            logger.exception("Evaluation %s: candidate %s failed", job.id, candidate.id)
            run.write(
                ev.candidate_mark,
                candidate_id=candidate.id,
                status=CandidateStatus.FAILED,
                reason=f"{type(exc).__name__}: {exc}",
            )
    if scored == 0:
        raise UserFacingError("No candidate could be scored: see each candidate's reason.")
    run.write(
        _evaluation_succeed,
        job=job,
        result={"scored": scored, "candidates": len(candidates), "rows": len(rows)},
        message=f"Scored {scored} of {len(candidates)} candidates on {len(rows)} rows",
    )


def _scored(candidate: EvaluationCandidate, run: JobRun) -> bool:
    run.read(lambda: candidate.refresh_from_db(fields=["status"]))
    return candidate.status == CandidateStatus.DONE


evaluate_job = job_task(
    _evaluate,
    name="jobs.evaluate",
    soft_time_limit=EVALUATE_SOFT_LIMIT_S,
    time_limit=EVALUATE_SOFT_LIMIT_S + 120,
)
