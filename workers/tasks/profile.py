"""Profile a dataset: token lengths with a model's tokenizer."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from lifecycle_app.datasets.files import clean_file
from lifecycle_app.datasets.services import dataset_record_profile
from lifecycle_app.jobs import services as job_services
from lifecycle_app.jobs.models import Job
from workers.ml.errors import UserFacingError
from workers.tasks.base import JobCancelled, JobRun, job_task, model_spec_for

PROFILE_SOFT_LIMIT_S = 30 * 60


def _profile(job: Job, run: JobRun) -> None:
    from workers.ml import loading as models
    from workers.ml.data.profile import profile

    dataset = job.dataset
    if dataset is None:
        raise UserFacingError("The dataset of this job was deleted.")
    run.write(
        job_services.job_progress,
        job_id=job.id,
        done=0,
        total=dataset.valid_rows,
        message="Loading the tokenizer",
    )
    tokenizer, context_length, _ = models.load_tokenizer(
        model_spec_for(job), Path(settings.MODELS_DIR)
    )

    def on_progress(done: int, total: int) -> None:
        if run.should_cancel():
            raise JobCancelled
        run.write(
            job_services.job_progress, job_id=job.id, done=done, total=total, message="Tokenizing"
        )

    try:
        result = profile(
            clean_file(dataset),
            tokenizer,
            context_length=context_length,
            on_progress=on_progress,
        )
    except JobCancelled:
        run.write(job_services.job_mark_cancelled, job_id=job.id)
        return
    result["model"] = job.base_model.name if job.base_model else ""
    run.write(dataset_record_profile, dataset_id=dataset.id, profile=result)
    rows = sum(result.get("rows", {}).values())
    run.write(
        job_services.job_succeed,
        job_id=job.id,
        result={"over_context": result.get("over_context", 0), "rows": rows},
        message=f"Profiled {rows} rows",
    )


profile_job = job_task(
    _profile,
    name="jobs.profile",
    soft_time_limit=PROFILE_SOFT_LIMIT_S,
    time_limit=PROFILE_SOFT_LIMIT_S + 60,
)
