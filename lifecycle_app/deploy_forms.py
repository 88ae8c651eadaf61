"""Forms of the Application-integration stage: export jobs and the integration checklist."""

from __future__ import annotations

from typing import Any

from django import forms

from lifecycle_app.forms import StepForm
from lifecycle_app.models import BaseModel, Dataset, ModelVariant, PromptTemplate, VariantKind
from lifecycle_app.prompting import snapshot
from workers.ml.params import MAX_EXPORT_ROWS, ExportParams


class ExportForm(StepForm):
    base_model = forms.ModelChoiceField(
        label="Model to export",
        queryset=BaseModel.objects.none(),
        to_field_name="slug",
        empty_label=None,
        help_text="A catalog model or one of this project's candidates. A LoRA candidate is "
        "merged into its base weights first.",
    )
    kind = forms.ChoiceField(
        label="Variant",
        choices=VariantKind.choices,
        initial=VariantKind.INT8,
        widget=forms.RadioSelect,
        help_text="Merged safetensors: full precision, loads anywhere. int8: Linear layers "
        "quantized for CPU serving (smaller and usually faster; small models can lose a lot of "
        "quality, so read the ROUGE change). "
        "ONNX: a graph for other runtimes (size only here).",
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
                BaseModel.objects.for_project(project)
                .filter(weights_present=True)
                .exclude(id__in=exported.values("candidate_id"))
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


CHECKLIST_ITEMS: tuple[tuple[str, str, str], ...] = (
    (
        "retrieval",
        "Retrieval over documents",
        "Does the model need your documents at answer time (retrieval-augmented generation)?",
    ),
    (
        "reasoning",
        "Reasoning aids",
        "Chain-of-thought prompts, tools or program-aided steps for multi-step questions.",
    ),
    (
        "monitoring",
        "Monitoring",
        "Logging prompts and answers, quality checks on live traffic, drift and cost alerts.",
    ),
    (
        "fallback",
        "Human fallback",
        "Who takes over when the model is unsure, wrong or the user asks for a person.",
    ),
    (
        "infrastructure",
        "Infrastructure",
        "Where it runs, how it scales, latency and cost budgets, the serving worker.",
    ),
)
CHECKLIST_STATUSES = [
    ("open", "To decide"),
    ("not_needed", "Not needed"),
    ("planned", "Planned"),
    ("in_progress", "In progress"),
    ("done", "Done"),
]


class IntegrationChecklistForm(StepForm):
    """Status and notes for each thing the application needs around the model."""

    def __init__(self, *args: Any, project: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, project=project, **kwargs)
        for key, label, _help in CHECKLIST_ITEMS:
            self.fields[f"{key}_status"] = forms.ChoiceField(
                label=f"{label}: status", choices=CHECKLIST_STATUSES, initial="open"
            )
            self.fields[f"{key}_notes"] = forms.CharField(
                label=f"{label}: notes",
                required=False,
                max_length=2000,
                widget=forms.Textarea(attrs={"rows": 2}),
            )

    def rows(self) -> list[dict[str, Any]]:
        """One row per item for the template: label, help and its two bound fields."""
        return [
            {
                "key": k,
                "label": label,
                "help": help_,
                "status": self[f"{k}_status"],
                "notes": self[f"{k}_notes"],
            }
            for k, label, help_ in CHECKLIST_ITEMS
        ]

    def answers(self) -> dict[str, Any]:
        return {
            "items": {
                k: {
                    "status": self.cleaned_data[f"{k}_status"],
                    "notes": self.cleaned_data[f"{k}_notes"],
                }
                for k, _, _ in CHECKLIST_ITEMS
            }
        }


def checklist_initial(answers: dict[str, Any]) -> dict[str, Any]:
    initial: dict[str, Any] = {}
    for key, item in (answers.get("items") or {}).items():
        initial[f"{key}_status"] = item.get("status", "open")
        initial[f"{key}_notes"] = item.get("notes", "")
    return initial


def checklist_complete(answers: dict[str, Any]) -> bool:
    items = answers.get("items") or {}
    return len(items) == len(CHECKLIST_ITEMS) and all(
        i.get("status") != "open" for i in items.values()
    )


def checklist_view(answers: dict[str, Any]) -> list[dict[str, str]]:
    """The saved checklist as rows for the project page."""
    labels = dict(CHECKLIST_STATUSES)
    items = answers.get("items") or {}
    return [
        {
            "key": key,
            "label": label,
            "status": (items.get(key) or {}).get("status", "open"),
            "status_label": labels[(items.get(key) or {}).get("status", "open")],
            "notes": (items.get(key) or {}).get("notes", ""),
        }
        for key, label, _ in CHECKLIST_ITEMS
    ]
