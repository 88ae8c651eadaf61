"""The single-prompt playground's writes: start a generation job, record its output."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.db import transaction

from lifecycle_app.catalog.models import CatalogModel
from lifecycle_app.jobs.models import Job, JobKind
from lifecycle_app.jobs.services import job_create
from lifecycle_app.projects.models import Project, StageKey
from lifecycle_app.projects.services import stage_step_save
from lifecycle_app.projects.steps import StepSlug
from lifecycle_app.stages.prompt.models import GenerationOutput
from workers.ml.params import GenerateParams


def job_create_generate(
    *, project: Project, user: User, base_model: CatalogModel, params: GenerateParams
) -> Job:
    with transaction.atomic():
        job = job_create(
            project=project,
            user=user,
            kind=JobKind.GENERATE,
            base_model=base_model,
            params=params.model_dump(),
            progress_total=params.max_new_tokens,
            progress_unit="tokens",
        )
        GenerationOutput.objects.create(job=job, index=0, prompt=params.prompt)
        stage_step_save(
            project=project,
            stage_key=StageKey.ADAPT,
            step_slug=StepSlug.PROMPT,
            answers={"last_params": params.model_dump(), "last_job": job.id},
        )
    return job


def generation_output_update(*, job_id: int, index: int, **fields: Any) -> None:
    GenerationOutput.objects.filter(job_id=job_id, index=index).update(**fields)
