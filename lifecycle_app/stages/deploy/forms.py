"""The export form of the Optimize-and-deploy step."""

from __future__ import annotations

from typing import Any

from django import forms

from lifecycle_app.catalog.models import CatalogModel
from lifecycle_app.common.forms import StepForm
from lifecycle_app.datasets.models import Dataset
from lifecycle_app.stages.deploy.models import ModelVariant, VariantKind
from lifecycle_app.stages.prompt.building import snapshot
from lifecycle_app.stages.prompt.models import PromptTemplate
from workers.ml.params import MAX_EXPORT_ROWS, ExportParams


class ExportForm(StepForm):
    base_model = forms.ModelChoiceField(
        label="Model to export",
        queryset=CatalogModel.objects.none(),
        to_field_name="slug",
        empty_label=None,
        help_text="A catalog model or one of this project's candidates. A LoRA candidate is "
        "merged into its base weights first.",
    )
    kind = forms.ChoiceField(
        label="Variant",
        choices=VariantKind.choices,
        # The fastest variant that kept the parent's quality on CPU (bench/quantization.py).
        initial=VariantKind.ONNX_INT8,
        widget=forms.RadioSelect,
        help_text="Merged safetensors: full precision, loads anywhere. int8 weight-only: "
        "weights stored as int8 per channel, activations kept in float (about a third of the "
        "size, quality kept). ONNX: the graph with a KV cache, run by onnxruntime; its "
        "block-wise int8 form (a scale per 64 weights, the default) is less than half the "
        "size, keeps the quality and was the fastest on CPU. Dynamic int8 also quantizes the "
        "activations and loses much of a small model's quality. Every variant is measured "
        "beside its parent and can be deployed.",
    )
    dataset = forms.ModelChoiceField(
        queryset=Dataset.objects.none(),
        required=False,
        empty_label="No dataset: size and speed only",
        help_text="Quality is measured on its test split, for the variant and its parent alike.",
    )
    eval_rows = forms.IntegerField(
        label="Test rows",
        initial=20,
        min_value=1,
        max_value=MAX_EXPORT_ROWS,
        help_text="The first N rows of the test split, generated greedily by both models.",
    )
    max_new_tokens = forms.IntegerField(
        label="Max new tokens", initial=32, min_value=1, max_value=256
    )

    def __init__(self, *args: Any, project: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, project=project, **kwargs)
        self.params: ExportParams | None = None
        if project is not None:
            exported = ModelVariant.objects.filter(project=project, candidate__isnull=False)
            self.fields["base_model"].queryset = (  # type: ignore[attr-defined]
                CatalogModel.objects.for_project(project)
                .filter(weights_present=True)
                .exclude(id__in=exported.values("candidate_id"))
                .pickable()
            )
            self.fields["dataset"].queryset = Dataset.objects.filter(project=project)  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        source, dataset = data.get("base_model"), data.get("dataset")
        if self.errors or source is None:
            return data
        template = None
        if dataset is not None:
            template = (
                PromptTemplate.objects.filter(project=self.project).order_by("-created_at").first()
            )
        self.params = ExportParams(
            kind=data["kind"],
            model_ref=source.slug,
            dataset_id=dataset.id if dataset else None,
            eval_rows=data["eval_rows"],
            max_new_tokens=data["max_new_tokens"],
            score_kind="label" if dataset is not None and dataset.classification else "rouge",
            template=snapshot(template) if template else None,
        )
        return data
