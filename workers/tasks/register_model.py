"""Register a base model: resolve its folder, describe it, add it to the catalog."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from lifecycle_app.catalog.services import catalog_model_register_result
from lifecycle_app.jobs import services as job_services
from lifecycle_app.jobs.models import Job
from workers.tasks.base import JobRun, job_task


def _register_model(job: Job, run: JobRun) -> None:
    from workers.ml import loading as models
    from workers.ml.planner import shape as planner

    source, location = job.params["source"], job.params["location"]
    spec = models.ModelSpec(source=source, location=location)
    path = models.resolve(spec, Path(settings.MODELS_DIR))
    info = models.describe(path)
    shape = planner.shape_from_config(path)
    model = run.write(
        catalog_model_register_result,
        name=job.params.get("name") or location,
        source=source,
        location=location,
        info=info,
        shape=shape.to_json(),
        weights_present=models.weights_present(path),
    )
    run.write(
        job_services.job_succeed,
        job_id=job.id,
        result={"base_model": model.slug},
        message=f"Added {model.name} ({info.family}, {info.n_params:,} parameters)",
    )


register_model_job = job_task(
    _register_model, name="jobs.register_model", soft_time_limit=300, time_limit=360
)
