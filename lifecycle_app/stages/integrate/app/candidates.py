"""Which models an application can use, and where a version's model is on disk.

The same candidates as evaluation and deployment offer: catalog models, the project's
fine-tuned and aligned models (and loadable exported variants, which are recorded as
project models), and exported variants themselves (ONNX included, which the serving
worker runs through onnxruntime).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from lifecycle_app.catalog.models import CatalogModel
from lifecycle_app.projects.models import Project
from lifecycle_app.stages.deploy.models import ModelVariant
from lifecycle_app.stages.evaluate.candidates import model_unavailable
from lifecycle_app.stages.integrate.app.models import ApplicationVersion
from workers.ml.loading import ModelSpec, prepared_path


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


def version_model_path(version: ApplicationVersion) -> str:
    """The folder the serving worker loads for this version ("" when it is gone or not
    prepared). Never builds or converts anything (the web process calls it)."""
    if version.variant is not None:
        return version.variant.path if Path(version.variant.path).exists() else ""
    model = version.model
    if model is None:
        return ""
    spec = ModelSpec(source=model.source, location=model.location)  # type: ignore[arg-type]
    folder = prepared_path(spec, Path(settings.MODELS_DIR))
    return str(folder) if folder is not None else ""


def version_unavailable(version: ApplicationVersion) -> str:
    if version.model is None and version.variant is None:
        return f"Its model ({version.model_label}) was deleted."
    if not version_model_path(version):
        return f"The weights of {version.model_label} are not on this machine."
    return ""
