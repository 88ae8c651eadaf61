"""A prompt trial: a prompt template over the rows of a dataset, scored."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from lifecycle_app.jobs import services as job_services
from lifecycle_app.jobs.models import Job
from lifecycle_app.stages.prompt import services as trial_services
from lifecycle_app.stages.prompt.building import PromptingError, build_for_trial
from workers.ml.errors import UserFacingError
from workers.tasks.base import JobRun, job_task, model_spec_for

TRIAL_SOFT_LIMIT_S = 60 * 60


def _trial(job: Job, run: JobRun) -> None:
    from workers.ml import loading as models
    from workers.ml.generation.batch import RowOutcome, TrialStats, run_trial
    from workers.ml.params import TrialParams

    params = TrialParams(**job.params)
    if job.dataset is None or job.base_model is None:
        raise UserFacingError("The dataset or model of this trial was deleted.")
    try:
        built = build_for_trial(base_model=job.base_model, dataset=job.dataset, params=params)
    except PromptingError as exc:
        raise UserFacingError(str(exc)) from exc
    run.write(trial_services.trial_examples_init, job_id=job.id, prompts=built.prompts)
    total = built.rows
    run.write(
        job_services.job_progress,
        job_id=job.id,
        done=0,
        total=total,
        message=f"Loading the model for {total} rows",
    )
    loaded = models.load(model_spec_for(job), Path(settings.MODELS_DIR))
    extra = {"device": loaded.device, "shots": len(built.shots)}
    run.write(job_services.job_progress, job_id=job.id, done=0, total=total, message="Generating")

    def on_batch(outcomes: list[RowOutcome], stats: TrialStats) -> None:
        run.write(
            trial_services.trial_record_batch,
            job_id=job.id,
            outcomes=outcomes,
            stats=stats,
            extra=extra,
        )

    stats = run_trial(
        loaded,
        built.prompts,
        params.generation_settings(),
        score_kind=params.score_kind,
        batch_size=params.batch_size,
        on_batch=on_batch,
        should_cancel=run.should_cancel,
    )
    summary = trial_services.trial_summary(stats, **extra)
    if stats.cancelled:
        run.write(job_services.job_mark_cancelled, job_id=job.id, result=summary)
        return
    if stats.rows_done == 0:
        raise UserFacingError(
            "No row could be generated: "
            + ("every row was skipped." if stats.rows_skipped == total else "see the rows below.")
        )
    scores = ", ".join(f"{k} {v:.3f}" for k, v in stats.scores.items())
    run.write(
        trial_services.trial_succeed,
        job_id=job.id,
        result=summary,
        message=f"{stats.rows_done} rows, {scores}, {stats.tokens_per_second} tokens/s",
    )


trial_job = job_task(
    _trial,
    name="jobs.trial",
    soft_time_limit=TRIAL_SOFT_LIMIT_S,
    time_limit=TRIAL_SOFT_LIMIT_S + 60,
)
