"""The integration checklist form: a status and notes per item."""

from __future__ import annotations

from typing import Any

from django import forms

from lifecycle_app.common.forms import StepForm
from lifecycle_app.stages.integrate.items import CHECKLIST_ITEMS, CHECKLIST_STATUSES


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
