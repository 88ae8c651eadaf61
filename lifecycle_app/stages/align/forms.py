"""The alignment step's form (DPO on a preference set), the rating-round form and the
preference import form."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from pydantic import ValidationError as PydanticValidationError

from lifecycle_app.catalog.models import CatalogModel
from lifecycle_app.common.forms import StepForm
from lifecycle_app.jobs.models import Job
from lifecycle_app.stages.align.models import PreferenceSet
from lifecycle_app.stages.prompt.selectors import trial_label
from workers.ml.params import MAX_TRAIN_STEPS, AlignParams, heldout_count

MAX_UPLOAD_BYTES = 10 * 2**20


class AlignForm(StepForm):
    base_model = forms.ModelChoiceField(
        label="Start from",
        queryset=CatalogModel.objects.none(),
        to_field_name="slug",
        empty_label=None,
        help_text="A catalog model or one of this project's fine-tuned candidates.",
    )
    preference_set = forms.ModelChoiceField(
        label="Preference set",
        queryset=PreferenceSet.objects.none(),
        empty_label=None,
        error_messages={"required": "Build a preference set from ratings, or import one, first."},
    )
    beta = forms.FloatField(
        initial=0.1,
        min_value=0.001,
        max_value=10.0,
        help_text="How far the model may move from where it starts: small (0.1) lets the "
        "preferences pull hard, large keeps it close to the starting model.",
    )
    learning_rate = forms.FloatField(
        label="Learning rate", initial=5e-5, min_value=1e-8, max_value=1.0
    )
    max_steps = forms.IntegerField(
        label="Steps",
        initial=30,
        min_value=1,
        max_value=MAX_TRAIN_STEPS,
        help_text="Optimizer steps; each sees a batch of pairs.",
    )
    batch_size = forms.IntegerField(label="Pairs per batch", initial=4, min_value=1, max_value=256)
    grad_accum = forms.IntegerField(
        label="Gradient accumulation", initial=1, min_value=1, max_value=256
    )
    max_length = forms.IntegerField(
        label="Max length",
        initial=512,
        min_value=16,
        max_value=32768,
        help_text="Tokens of prompt plus answer; longer prompts lose their start.",
    )
    lora_r = forms.IntegerField(label="LoRA rank", initial=8, min_value=1, max_value=256)
    lora_alpha = forms.IntegerField(label="LoRA alpha", initial=16, min_value=1, max_value=1024)
    target_modules = forms.CharField(
        label="Target modules",
        initial="q_proj, v_proj",
        max_length=300,
        help_text="Layer names, comma-separated.",
    )
    heldout_fraction = forms.FloatField(
        label="Held out",
        initial=0.2,
        min_value=0.0,
        max_value=0.5,
        help_text="Share of pairs kept out of training to measure preference accuracy "
        "before and after.",
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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params: AlignParams | None = None
        if self.project is not None:
            models = CatalogModel.objects.for_project(self.project).exclude(shape={})
            self.fields["base_model"].queryset = models.pickable()  # type: ignore[attr-defined]
            self.fields["preference_set"].queryset = PreferenceSet.objects.filter(  # type: ignore[attr-defined]
                project=self.project
            )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.errors:
            return cleaned
        modules = [m for m in re.split(r"[,\s]+", cleaned["target_modules"]) if m]
        data = {
            k: cleaned[k]
            for k in (
                "beta",
                "learning_rate",
                "max_steps",
                "batch_size",
                "grad_accum",
                "max_length",
                "lora_r",
                "lora_alpha",
                "heldout_fraction",
                "checkpoint_every",
                "seed",
            )
        }
        data["processes"] = cleaned.get("processes") or 1
        try:
            self.params = AlignParams(
                **data,
                target_modules=modules,
                model_ref=cleaned["base_model"].slug,
                preference_set_id=cleaned["preference_set"].id,
            )
        except PydanticValidationError as exc:
            for err in exc.errors():
                self.add_error(None, str(err["msg"]).removeprefix("Value error, "))
            return cleaned
        pairs = cleaned["preference_set"].pairs.count()
        held = heldout_count(pairs, self.params.heldout_fraction)
        if pairs - held < 2:
            self.add_error(
                "preference_set",
                f"This set has {pairs} pair(s); alignment needs at least 2 left for training "
                "after the held-out share.",
            )
        return cleaned


class RoundForm(forms.Form):
    name = forms.CharField(max_length=120, required=False)
    trial_a = forms.ModelChoiceField(
        queryset=Job.objects.none(), label="Answers A from", empty_label=None
    )
    trial_b = forms.ModelChoiceField(
        queryset=Job.objects.none(), label="Answers B from", empty_label=None
    )
    max_items = forms.IntegerField(label="Rows", initial=20, min_value=1, max_value=500)

    def __init__(self, *args: Any, trials: list[Job], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        ids = [t.id for t in trials]
        for name in ("trial_a", "trial_b"):
            field = self.fields[name]
            field.queryset = Job.objects.filter(id__in=ids).order_by("-id")  # type: ignore[attr-defined]
            field.label_from_instance = trial_label  # type: ignore[attr-defined]
        if not self.is_bound and len(ids) >= 2:  # the two newest trials, ready to compare
            self.initial.setdefault("trial_a", ids[1])
            self.initial.setdefault("trial_b", ids[0])


class PreferenceImportForm(forms.Form):
    name = forms.CharField(max_length=120, required=False)
    file = forms.FileField(
        help_text='JSON Lines: one {"prompt": …, "chosen": …, "rejected": …} per line.'
    )

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        if upload.size > MAX_UPLOAD_BYTES:
            raise forms.ValidationError(
                f"The file is {upload.size / 2**20:.1f} MB; the limit is "
                f"{MAX_UPLOAD_BYTES // 2**20} MB."
            )
        return upload
