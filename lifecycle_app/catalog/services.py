"""Catalog writes: add, register and update base models."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.utils.text import slugify

from lifecycle_app.catalog.models import CatalogModel
from lifecycle_app.jobs.models import Job, JobKind
from lifecycle_app.jobs.services import job_create
from lifecycle_app.projects.models import Project


def catalog_model_upsert(*, slug: str, **fields: Any) -> CatalogModel:
    model, _ = CatalogModel.objects.update_or_create(slug=slug, defaults=fields)
    return model


def catalog_model_unique_slug(name: str) -> str:
    base = slugify(name)[:70] or "model"
    slug, n = base, 2
    while CatalogModel.objects.filter(slug=slug).exists():
        slug, n = f"{base}-{n}", n + 1
    return slug


def catalog_model_register(
    *, project: Project, user: User, source: str, location: str, name: str
) -> Job:
    """Start a job that reads the model's config on a worker and adds it to the catalog.

    Reading a config and counting parameters needs transformers and torch, which the web
    process never imports; the form has already checked what it can without them.
    """

    return job_create(
        project=project,
        user=user,
        kind=JobKind.REGISTER_MODEL,
        params={"source": source, "location": location, "name": name},
        progress_total=1,
        progress_unit="models",
    )


def catalog_model_register_result(
    *,
    name: str,
    source: str,
    location: str,
    info: Any,
    shape: dict[str, Any],
    weights_present: bool,
) -> CatalogModel:
    """Add (or refresh) a catalog entry from what a worker read off the model's config."""
    existing = CatalogModel.objects.catalog().filter(source=source, location=location).first()
    slug = existing.slug if existing else catalog_model_unique_slug(name)
    return catalog_model_upsert(
        slug=slug,
        name=name[:120],
        source=source,
        location=location,
        **catalog_model_fields_from_info(info),
        shape=shape,
        weights_present=weights_present,
    )


def catalog_model_fields_from_info(info: Any) -> dict[str, Any]:
    """Catalog fields from a workers.ml.loading.ModelInfo (read off the model's config)."""
    return {
        "family": info.family,
        "architecture": info.architecture,
        "n_params": info.n_params,
        "context_length": info.context_length,
        "n_layers": info.n_layers,
        "hidden_size": info.hidden_size,
        "vocab_size": info.vocab_size,
    }
