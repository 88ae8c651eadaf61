"""Starting the token-length profile job of a dataset."""

from __future__ import annotations

from django.contrib.auth.models import User

from lifecycle_app.catalog.models import CatalogModel
from lifecycle_app.datasets.models import Dataset
from lifecycle_app.jobs.models import Job, JobKind
from lifecycle_app.jobs.services import job_create
from lifecycle_app.projects.models import Project


def job_create_profile(
    *, project: Project, user: User, dataset: Dataset, base_model: CatalogModel
) -> Job:
    """Token-length profile of a dataset with `base_model`'s tokenizer (runs on a worker)."""
    return job_create(
        project=project,
        user=user,
        kind=JobKind.PROFILE,
        base_model=base_model,
        dataset=dataset,
        params={"dataset_id": dataset.id, "model_ref": base_model.slug},
        progress_total=dataset.valid_rows,
        progress_unit="rows",
    )
