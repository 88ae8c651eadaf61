"""Alignment (DPO) on a preference set, resumed from its last checkpoint when
redelivered."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from lifecycle_app.jobs import services as job_services
from lifecycle_app.jobs.models import Job
from lifecycle_app.stages.align import services as fb
from lifecycle_app.stages.finetune import runs as ft
from workers.ml.errors import UserFacingError
from workers.tasks import distributed
from workers.tasks.base import JobRun, job_task, model_spec_for
from workers.tasks.training import (
    FINETUNE_SOFT_LIMIT_S,
    _training_end,
    _training_progress,
    run_folder,
)


def _align(job: Job, run: JobRun) -> None:
    from workers.ml import loading as models
    from workers.ml.params import AlignParams
    from workers.ml.training import dpo as align

    params = AlignParams(**job.params)
    if job.base_model is None:
        raise UserFacingError("The model this run starts from was deleted.")
    pairs = [align.Pair(**p) for p in fb.align_pairs(job=job)]
    if not pairs:
        raise UserFacingError("The preference set of this run was deleted or is empty.")
    out_dir = run_folder(run)
    resume = job.attempt > 1 and align.latest_checkpoint(out_dir) is not None
    run.write(
        job_services.job_progress,
        job_id=job.id,
        done=job.progress_done if resume else 0,
        total=params.max_steps,
        message="Loading the model" + (" to resume from the last checkpoint" if resume else ""),
    )
    nproc = distributed.process_count(params)
    if resume:
        checkpoint = align.latest_checkpoint(out_dir)
        name = checkpoint.name if checkpoint else "the start"
        run.write(
            ft.finetune_log, job_id=job.id, line=f"attempt {job.attempt}: resuming from {name}"
        )
    else:
        run.write(
            ft.finetune_log, job_id=job.id, line="measuring preference accuracy before alignment"
        )

    def on_score(when: str, score: align.PreferenceScore) -> None:
        run.write(
            ft.run_result_merge, job_id=job.id, key="preference", values={when: score.as_dict()}
        )
        run.write(
            ft.finetune_log,
            job_id=job.id,
            line=f"preference accuracy {when} alignment: {score.accuracy:.1%} of "
            f"{score.pairs} held-out pairs (mean log-likelihood margin {score.margin:+.3f})",
        )

    if nproc > 1:
        shared = distributed.align_dpo(
            job,
            run,
            params,
            nproc,
            pairs=pairs,
            out_dir=out_dir,
            resume=resume,
            on_step=_training_progress(job, run),
            on_score=on_score,
        )
        if shared is not None:  # None: a process was lost and the job resumes later
            _training_end(job, run, shared, fb.align_finish)
        return
    result = align.align(
        models.load(model_spec_for(job), Path(settings.MODELS_DIR)),
        params,
        pairs,
        out_dir=out_dir,
        on_step=_training_progress(job, run),
        on_score=on_score,
        should_cancel=run.should_cancel,
        resume=resume,
    )
    _training_end(job, run, result, fb.align_finish)


align_job = job_task(
    _align,
    name="jobs.align",
    soft_time_limit=FINETUNE_SOFT_LIMIT_S,
    time_limit=FINETUNE_SOFT_LIMIT_S + 300,
)
