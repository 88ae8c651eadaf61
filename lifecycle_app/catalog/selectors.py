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


# A model named by reference where a folder row value could also stand ("catalog:<id>"):
# what the web sends the serving worker and app-evaluation jobs for a catalog model or
# project candidate, so the host that loads it resolves it (workers.tasks.base.model_folder).
CATALOG_REF = "catalog:"


def catalog_ref(model: CatalogModel) -> str:
    return f"{CATALOG_REF}{model.id}"


def model_for_ref(ref: str) -> CatalogModel | None:
    """The model a "catalog:<id>" reference names (None: not such a reference, or deleted)."""
    if not ref.startswith(CATALOG_REF) or not ref[len(CATALOG_REF) :].isdigit():
        return None
    return (
        CatalogModel.objects.select_related("parent")
        .filter(id=int(ref[len(CATALOG_REF) :]))
        .first()
    )
