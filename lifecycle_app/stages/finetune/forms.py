"""The fine-tuning step's form: method, hyperparameters, and the plan checked before launch."""

from __future__ import annotations

from typing import Any

from django import forms
from pydantic import ValidationError as PydanticValidationError

from lifecycle_app.catalog.models import CatalogModel
from lifecycle_app.common.forms import StepForm
from lifecycle_app.datasets.models import Dataset
from lifecycle_app.stages.finetune.planning import plan_for
from lifecycle_app.stages.prompt.building import snapshot
from lifecycle_app.stages.prompt.models import PromptTemplate
from workers.ml.params import MAX_TRAIN_STEPS, TrainParams


class FineTuneForm(StepForm):
    base_model = forms.ModelChoiceField(
        label="Base model",
        queryset=CatalogModel.objects.catalog(),
        to_field_name="slug",
        empty_label=None,
    )
    dataset = forms.ModelChoiceField(
        queryset=Dataset.objects.none(),
        empty_label=None,
        error_messages={"required": "Upload a dataset first: training reads its train split."},
    )
    template = forms.ModelChoiceField(
        label="Prompt template",
        queryset=PromptTemplate.objects.none(),
        empty_label=None,
        help_text="Training writes each row with this template (zero-shot), so the model "
        "learns the exact text trials and inference will send.",
        error_messages={"required": "Create a prompt template first (Prompt engineering)."},
    )
    method = forms.ChoiceField(
        choices=[
            ("lora", "LoRA (low-rank adapters)"),
            ("full", "Full fine-tuning"),
            ("prompt_tuning", "Prompt tuning (virtual tokens)"),
        ],
        initial="lora",
        widget=forms.RadioSelect,
    )
    lora_r = forms.IntegerField(label="LoRA rank", initial=8, min_value=1, max_value=256)
    lora_alpha = forms.IntegerField(label="LoRA alpha", initial=16, min_value=1, max_value=1024)
    lora_dropout = forms.FloatField(
        label="LoRA dropout", initial=0.05, min_value=0.0, max_value=0.9
    )
    target_modules = forms.MultipleChoiceField(
        label="Target modules", required=False, widget=forms.CheckboxSelectMultiple
    )
    num_virtual_tokens = forms.IntegerField(
        label="Virtual tokens", initial=16, min_value=1, max_value=512
    )
    max_steps = forms.IntegerField(
        label="Max steps",
        initial=30,
        min_value=1,
        max_value=MAX_TRAIN_STEPS,
        required=False,
        help_text="Optimizer steps; leave empty to train for the epochs below.",
    )
    epochs = forms.FloatField(initial=1.0, min_value=0.01, max_value=100)
    learning_rate = forms.FloatField(
        label="Learning rate",
        required=False,
        min_value=1e-8,
        max_value=1.0,
        help_text="Empty: 2e-4 for LoRA, 3e-2 for prompt tuning, 2e-5 for full.",
    )
    lr_scheduler = forms.ChoiceField(
        label="Schedule",
        choices=[("linear", "Linear decay"), ("cosine", "Cosine"), ("constant", "Constant")],
        initial="linear",
    )
    warmup_steps = forms.IntegerField(label="Warmup steps", initial=0, min_value=0)
    batch_size = forms.IntegerField(label="Batch size", initial=4, min_value=1, max_value=256)
    grad_accum = forms.IntegerField(
        label="Gradient accumulation", initial=1, min_value=1, max_value=256
    )
    max_seq_len = forms.IntegerField(
        label="Max sequence length", initial=256, min_value=16, max_value=32768
    )
    eval_every = forms.IntegerField(
        label="Evaluate every", initial=10, min_value=0, help_text="steps; 0 = only at the end"
    )
    checkpoint_every = forms.IntegerField(
        label="Checkpoint every", initial=10, min_value=0, help_text="steps; 0 = none"
    )
    seed = forms.IntegerField(initial=0, min_value=0, max_value=2**31 - 1)
    processes = forms.IntegerField(
        label="Processes",
        initial=1,
        min_value=1,
        max_value=64,
        required=False,
        help_text="data-parallel; at most one per GPU (or CPU core) of the worker",
    )

    field_order = ["base_model", "dataset", "template", "method"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["base_model"].queryset = CatalogModel.objects.catalog().pickable()  # type: ignore[attr-defined]
        self.params: TrainParams | None = None
        self.plan: dict[str, Any] = {}
        if self.project is not None:
            self.fields["dataset"].queryset = Dataset.objects.filter(  # type: ignore[attr-defined]
                project=self.project
            )
            self.fields["template"].queryset = PromptTemplate.objects.filter(  # type: ignore[attr-defined]
                project=self.project
            )
        slug = self.data.get("base_model") if self.is_bound else self.initial.get("base_model")
        model = (
            CatalogModel.objects.catalog().pickable().filter(slug=slug).first() if slug else None
        )
        model = model or CatalogModel.objects.catalog().pickable().exclude(shape={}).first()
        if model is not None and not self.is_bound and not self.initial.get("base_model"):
            self.initial["base_model"] = model.slug
        targets = (model.shape or {}).get("linear_modules", {}) if model else {}
        names = sorted(t for t in targets if t != "lm_head")
        self.fields["target_modules"].choices = [(t, t) for t in names]  # type: ignore[attr-defined]
        if not self.is_bound and not self.initial.get("target_modules"):
            self.initial["target_modules"] = [t for t in ("q_proj", "v_proj") if t in names]

    def clean(self) -> dict[str, Any]:

        cleaned = super().clean() or {}
        if self.errors:
            return cleaned
        model: CatalogModel = cleaned["base_model"]
        if not model.shape:
            self.add_error("base_model", f"{model.name} has no recorded shape; run prepare_models.")
            return cleaned
        if cleaned["method"] == "lora" and not cleaned["target_modules"]:
            self.add_error("target_modules", "Pick at least one module for LoRA.")
            return cleaned
        data = {
            k: cleaned[k]
            for k in (
                "method",
                "lora_r",
                "lora_alpha",
                "lora_dropout",
                "target_modules",
                "num_virtual_tokens",
                "max_steps",
                "epochs",
                "learning_rate",
                "lr_scheduler",
                "warmup_steps",
                "batch_size",
                "grad_accum",
                "max_seq_len",
                "eval_every",
                "checkpoint_every",
                "seed",
            )
        }
        data["processes"] = cleaned.get("processes") or 1
        try:
            self.params = TrainParams(
                **data,
                model_ref=model.slug,
                dataset_id=cleaned["dataset"].id,
                template=snapshot(cleaned["template"]),
            )
        except PydanticValidationError as exc:
            for err in exc.errors():
                self.add_error(None, str(err["msg"]).removeprefix("Value error, "))
            return cleaned
        self.plan = plan_for(model, self.params, cleaned["dataset"])
        if not self.plan["fits"]:
            each = " per process" if self.plan["processes"] > 1 else ""
            self.add_error(
                None,
                f"This run needs about {self.plan['total_gb']:.2f} GB{each} but a worker has "
                f"{self.plan['available_gb']:.1f} GB{each}: {' '.join(self.plan['advice'][:2])}",
            )
        return cleaned
