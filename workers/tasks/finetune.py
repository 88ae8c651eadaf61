"""Fine-tuning (supervised, full or with adapters), resumed from its last checkpoint when
redelivered."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from lifecycle_app.jobs import services as job_services
from lifecycle_app.jobs.models import Job
from lifecycle_app.stages.finetune import runs as finetune_runs
from lifecycle_app.stages.finetune import services as finetune_services
from lifecycle_app.stages.prompt.building import PromptingError, kit_for, split_rows
from workers.ml.errors import UserFacingError
from workers.tasks import distributed
from workers.tasks.base import JobRun, job_task, model_spec_for
from workers.tasks.training import (
    FINETUNE_SOFT_LIMIT_S,
    _training_end,
    _training_progress,
    run_folder,
)


def _finetune(job: Job, run: JobRun) -> None:
    from workers.ml import loading as models
    from workers.ml.params import TrainParams
    from workers.ml.training import common as training_common
    from workers.ml.training import sft as training_sft

    params = TrainParams(**job.params)
    if job.dataset is None or job.base_model is None:
        raise UserFacingError("The dataset or model of this run was deleted.")
    try:
        kit = kit_for(job.base_model)
        train_rows = split_rows(job.dataset, "train")
        eval_rows = split_rows(job.dataset, "validation", params.eval_rows)
    except PromptingError as exc:
        raise UserFacingError(str(exc)) from exc
    render = training_common.make_render(kit, training_common.template_spec(params.template))
    out_dir = run_folder(run)
    resume = job.attempt > 1 and bool(training_common.checkpoints(out_dir))
    total = job.progress_total or params.max_steps or 0
    run.write(
        job_services.job_progress,
        job_id=job.id,
        done=job.progress_done if resume else 0,
        total=total,
        message="Loading the model" + (" to resume from the last checkpoint" if resume else ""),
    )
    nproc = distributed.process_count(params)
    if resume:
        run.write(
            finetune_runs.finetune_log,
            job_id=job.id,
            line=f"attempt {job.attempt}: resuming from {training_common.checkpoints(out_dir)[-1].name}",
        )

    on_step = _training_progress(job, run)

    def on_eval(e: training_common.EvalLog) -> None:
        run.write(
            finetune_runs.metric_record, job_id=job.id, step=e.step, values={"val_loss": e.loss}
        )
        run.write(
            finetune_runs.finetune_log,
            job_id=job.id,
            line=f"step {e.step}: validation loss {e.loss:.4f} on {e.rows} rows",
        )

    if nproc > 1:
        result = distributed.train_sft(
            job,
            run,
            params,
            nproc,
            train_rows=train_rows,
            eval_rows=eval_rows,
            out_dir=out_dir,
            resume=resume,
            on_step=on_step,
            on_eval=on_eval,
        )
        if result is not None:  # None: a process was lost and the job resumes later
            _training_end(job, run, result, finetune_services.finetune_finish)
        return
    result = training_sft.train(
        models.load(model_spec_for(job), Path(settings.MODELS_DIR)),
        params,
        train_rows,
        eval_rows,
        out_dir=out_dir,
        render=render,
        on_step=on_step,
        on_eval=on_eval,
        should_cancel=run.should_cancel,
        resume=resume,
    )
    _training_end(job, run, result, finetune_services.finetune_finish)


finetune_job = job_task(
    _finetune,
    name="jobs.finetune",
    soft_time_limit=FINETUNE_SOFT_LIMIT_S,
    time_limit=FINETUNE_SOFT_LIMIT_S + 300,
)
