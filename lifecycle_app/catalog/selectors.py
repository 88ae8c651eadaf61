"""Catalog reads: the models a project may pick, and a trained job's candidate."""

from __future__ import annotations

from django.db.models import QuerySet

from lifecycle_app.catalog.models import CatalogModel
from lifecycle_app.jobs.models import Job
from lifecycle_app.projects.models import Project


def catalog_list() -> QuerySet[CatalogModel]:
    return CatalogModel.objects.catalog().pickable()


def candidate_of(*, job: Job) -> CatalogModel | None:
    return CatalogModel.objects.filter(trained_by_job=job).first()


def finetuned_models(*, project: Project) -> list[CatalogModel]:
    """The project's own (fine-tuned) models, newest first."""
    return list(
        CatalogModel.objects.filter(project=project)
        .select_related("trained_by_job")
        .order_by("-created_at", "-id")
    )
