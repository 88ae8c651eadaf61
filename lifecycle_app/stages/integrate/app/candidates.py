"""Which models an application can use, and where a version's model is on disk.

The same candidates as evaluation and deployment offer: catalog models, the project's
fine-tuned and aligned models (and loadable exported variants, which are recorded as
project models), and exported variants themselves (ONNX included, which the serving
worker runs through onnxruntime).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lifecycle_app.catalog.models import CatalogModel
from lifecycle_app.catalog.selectors import catalog_ref
from lifecycle_app.projects.models import Project
from lifecycle_app.stages.deploy.models import ModelVariant
from lifecycle_app.stages.evaluate.candidates import model_unavailable
from lifecycle_app.stages.integrate.app.models import ApplicationVersion


@dataclass(frozen=True)
class ModelOption:
    key: str  # "base:<slug>" | "model:<id>" | "variant:<id>"
    label: str
    kind: str  # base | finetuned | aligned | exported
    model: CatalogModel | None = None
    variant: ModelVariant | None = None


def _kind_of(model: CatalogModel) -> str:
    job = model.trained_by_job
    return {"align": "aligned", "export": "exported"}.get(job.kind if job else "", "finetuned")


def model_options(*, project: Project) -> list[ModelOption]:
    options = [
        ModelOption(f"base:{m.slug}", f"{m.name} (catalog)", "base", model=m)
        for m in CatalogModel.objects.catalog().pickable().filter(weights_present=True)
    ]
    for m in CatalogModel.objects.filter(project=project).select_related("trained_by_job"):
        if not model_unavailable(m):
            kind = _kind_of(m)
            options.append(ModelOption(f"model:{m.id}", f"{m.name} ({kind})", kind, model=m))
    for v in ModelVariant.objects.filter(project=project, candidate__isnull=True).select_related(
        "parent"
    ):
        options.append(
            ModelOption(
                f"variant:{v.id}",
                f"{v.get_kind_display()} of {v.parent.name}",
                "exported",
                variant=v,
            )
        )
    return options


def version_model_ref(version: ApplicationVersion) -> str:
    """What the serving worker (or an app-evaluation job) is told to load for this version,
    resolved on its own host by `workers.tasks.base.model_folder`: "catalog:<id>" for a
    catalog model or project candidate (bundled models are prepared per host, store keys
    fetched, adapters pointed at that host's base), else the exported variant's folder (an
    absolute path or a store key). "" when the model was deleted. The web process neither
    resolves nor loads anything: on several machines the weights are not on its disk."""
    if version.variant is not None:
        return version.variant.path
    if version.model is not None:
        return catalog_ref(version.model)
    return ""


def version_unavailable(version: ApplicationVersion) -> str:
    """Why this version cannot answer ("" when it can, as far as the web can tell without
    the store: an absolute folder that is gone is seen here, a store key by the worker)."""
    if version.model is None and version.variant is None:
        return f"Its model ({version.model_label}) was deleted."
    if version.variant is not None:
        path = Path(version.variant.path)
        if path.is_absolute() and not path.exists():
            return f"The weights of {version.model_label} are gone ({path} was deleted)."
        return ""
    reason = model_unavailable(version.model)
    return f"{version.model_label}: {reason}" if reason else ""
