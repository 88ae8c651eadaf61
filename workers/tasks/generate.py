"""Generate one completion with a model (the playground)."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from lifecycle_app.jobs import services as jobs_services
from lifecycle_app.jobs.models import Job
from lifecycle_app.stages.prompt import playground as prompt_playground
from workers.tasks.base import JobRun, job_task, model_spec_for

GENERATE_SOFT_LIMIT_S = 15 * 60


def _generate(job: Job, run: JobRun) -> None:
    from workers.ml import loading as models
    from workers.ml.generation.stream import generate
    from workers.ml.params import GenerateParams

    params = GenerateParams(**job.params)
    run.write(
        jobs_services.job_progress,
        job_id=job.id,
        done=0,
        total=params.max_new_tokens,
        message="Loading the model",
    )
    loaded = models.load(model_spec_for(job), Path(settings.MODELS_DIR))
    run.write(
        jobs_services.job_progress,
        job_id=job.id,
        done=0,
        total=params.max_new_tokens,
        message="Generating",
    )

    def on_progress(done: int, total: int, text: str) -> None:
        run.write(
            jobs_services.job_progress,
            job_id=job.id,
            done=done,
            total=total,
            message="Generating",
        )
        run.write(prompt_playground.generation_output_update, job_id=job.id, index=0, text=text)

    result = generate(
        loaded,
        params,
        on_progress=on_progress,
        should_cancel=run.should_cancel,
    )
    run.write(
        prompt_playground.generation_output_update,
        job_id=job.id,
        index=0,
        text=result.text,
        prompt_tokens=result.prompt_tokens,
        output_tokens=result.output_tokens,
        finish_reason=result.finish_reason,
    )
    summary = {**result.as_dict(), "device": loaded.device}
    summary.pop("text")
    if result.finish_reason == "cancelled":
        run.write(jobs_services.job_mark_cancelled, job_id=job.id, result=summary)
    else:
        run.write(
            jobs_services.job_succeed,
            job_id=job.id,
            result=summary,
            message=f"{result.output_tokens} tokens at {result.tokens_per_second} tokens/s",
        )


generate_job = job_task(
    _generate,
    name="jobs.generate",
    soft_time_limit=GENERATE_SOFT_LIMIT_S,
    time_limit=GENERATE_SOFT_LIMIT_S + 60,
)
