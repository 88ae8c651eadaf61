"""Fine-tuning jobs: create, record curves and live figures, finish with an artifact and a
candidate model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction

from lifecycle_app.catalog.models import CatalogModel
from lifecycle_app.catalog.trained import trained_candidate_record
from lifecycle_app.datasets.models import Dataset
from lifecycle_app.jobs.models import Job, JobKind
from lifecycle_app.jobs.services import job_create
from lifecycle_app.projects.models import Project, StageKey
from lifecycle_app.projects.services import stage_step_save
from lifecycle_app.projects.steps import StepSlug
from workers.ml.params import TrainParams

LOG_TAIL = 40
METHOD_LABELS = {"lora": "LoRA", "full": "full fine-tune", "prompt_tuning": "prompt tuning"}
ARTIFACT_KINDS = {"lora": "lora_adapter", "prompt_tuning": "prompt_adapter", "full": "model"}


def finetune_create(
    *,
    project: Project,
    user: User,
    base_model: CatalogModel,
    dataset: Dataset,
    params: TrainParams,
    total_steps: int,
) -> Job:
    """Queue a fine-tuning job (raises JobLimitReached when a submission limit is hit)."""
    with transaction.atomic():
        job = job_create(
            project=project,
            user=user,
            kind=JobKind.FINETUNE,
            base_model=base_model,
            dataset=dataset,
            params=params.model_dump(),
            progress_total=total_steps,
            progress_unit="steps",
        )
        stage_step_save(
            project=project,
            stage_key=StageKey.ADAPT,
            step_slug=StepSlug.FINETUNE,
            answers={"last_run": job.id},
        )
    return job


@transaction.atomic
def finetune_finish(
    *, job: Job, summary: dict[str, Any], final_dir: Path, files: list[dict[str, Any]]
) -> CatalogModel:
    """Record the one final artifact and the candidate model, then succeed the job.

    Idempotent: a job finished twice (a redelivered task) still has one artifact and one
    candidate.
    """
    params = TrainParams(**job.params)
    label = METHOD_LABELS[params.method]
    losses = ", ".join(
        f"{name} {summary[key]:.3f}"
        for name, key in (
            ("train loss", "final_train_loss"),
            ("validation loss", "final_eval_loss"),
        )
        if summary.get(key) is not None
    )
    data = f"'{job.dataset.name}'" if job.dataset else "a deleted dataset"
    return trained_candidate_record(
        job=job,
        artifact_kind=ARTIFACT_KINDS[params.method],
        label=label,
        description=f"{label} of {{parent}} on {data} (job #{job.id}).",
        summary=summary,
        message=f"{summary.get('steps')} steps, {losses}",
        final_dir=final_dir,
        files=files,
        step_slug=StepSlug.FINETUNE,
    )
