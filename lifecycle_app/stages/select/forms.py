"""The Select stage's forms: pick a model, plan compute and memory."""

from __future__ import annotations

from typing import Any

from django import forms

from lifecycle_app.catalog.models import CatalogModel
from lifecycle_app.common.forms import StepForm


class ModelPickForm(StepForm):
    base_model = forms.ModelChoiceField(
        queryset=CatalogModel.objects.catalog(),
        to_field_name="slug",
        widget=forms.RadioSelect,
        empty_label=None,
        error_messages={"required": "Pick one model from the catalog."},
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["base_model"].queryset = CatalogModel.objects.catalog().pickable()  # type: ignore[attr-defined]

    def answers(self) -> dict[str, Any]:
        return {"base_model": self.cleaned_data["base_model"].slug}


class PlannerForm(StepForm):
    base_model = forms.ModelChoiceField(
        label="Model",
        queryset=CatalogModel.objects.catalog(),
        to_field_name="slug",
        empty_label=None,
    )
    method = forms.ChoiceField(
        choices=[
            ("inference", "Inference only"),
            ("full", "Full fine-tuning"),
            ("lora", "LoRA"),
            ("prompt_tuning", "Prompt tuning"),
        ],
        initial="lora",
    )
    dtype = forms.ChoiceField(
        label="Precision",
        choices=[("fp32", "FP32"), ("bf16", "BF16"), ("fp16", "FP16"), ("int8", "INT8")],
        initial="fp32",
    )
    lora_r = forms.IntegerField(label="LoRA rank", initial=8, min_value=1, max_value=512)
    lora_targets = forms.MultipleChoiceField(
        label="LoRA target modules", required=False, widget=forms.CheckboxSelectMultiple
    )
    num_virtual_tokens = forms.IntegerField(
        label="Prompt-tuning tokens", initial=20, min_value=1, max_value=1000
    )
    batch_size = forms.IntegerField(label="Batch size", initial=4, min_value=1, max_value=4096)
    seq_len = forms.IntegerField(
        label="Sequence length", initial=256, min_value=1, max_value=1_000_000
    )
    optimizer = forms.ChoiceField(
        choices=[("adamw", "AdamW"), ("sgd", "SGD with momentum")], initial="adamw"
    )
    gradient_checkpointing = forms.BooleanField(label="Gradient checkpointing", required=False)
    memory_gb = forms.FloatField(
        label="Memory available (GB)",
        initial=24,
        min_value=0.1,
        max_value=100_000,
        help_text="RAM for CPU, or the GPU's memory.",
    )
    accelerator = forms.ChoiceField(
        label="Pretraining accelerator",
        choices=[("h100", "NVIDIA H100"), ("a100", "NVIDIA A100"), ("cpu", "This CPU")],
        initial="h100",
    )
    n_devices = forms.IntegerField(label="Devices", initial=1, min_value=1, max_value=100_000)
    efficiency = forms.FloatField(
        label="Efficiency (MFU)",
        initial=0.4,
        min_value=0.01,
        max_value=1.0,
        help_text="Share of peak FLOP/s really achieved.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["base_model"].queryset = CatalogModel.objects.catalog().pickable()  # type: ignore[attr-defined]
        slug = self.data.get("base_model") if self.is_bound else self.initial.get("base_model")
        model = (
            CatalogModel.objects.catalog().pickable().filter(slug=slug).first() if slug else None
        )
        model = (
            model
            or CatalogModel.objects.catalog()
            .pickable()
            .exclude(shape={})
            .order_by("is_test_model", "id")
            .first()
        )
        if model is not None and not self.is_bound and not self.initial.get("base_model"):
            self.initial["base_model"] = model.slug
        targets = (model.shape or {}).get("linear_modules", {}) if model else {}
        names = sorted(t for t in targets if t != "lm_head")
        self.fields["lora_targets"].choices = [(t, t) for t in names]  # type: ignore[attr-defined]
        if not self.is_bound and not self.initial.get("lora_targets"):
            self.initial["lora_targets"] = [t for t in ("q_proj", "v_proj") if t in names]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        model: CatalogModel | None = cleaned.get("base_model")
        if model is not None and not model.shape:
            self.add_error(
                "base_model", f"{model.name} has no recorded shape yet; run prepare_models."
            )
        if cleaned.get("method") == "lora" and not cleaned.get("lora_targets"):
            self.add_error("lora_targets", "Pick at least one module for LoRA.")
        if cleaned.get("method") == "full" and cleaned.get("dtype") == "int8":
            self.add_error(
                "dtype", "INT8 weights cannot be fully fine-tuned; use LoRA or another precision."
            )
        return cleaned

    def answers(self) -> dict[str, Any]:
        data = dict(self.cleaned_data)
        data["base_model"] = data["base_model"].slug
        return data
