"""Forms of the Application-integration stage: export jobs and the integration checklist."""

from __future__ import annotations

from typing import Any

from django import forms

from lifecycle_app.common.forms import StepForm

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
