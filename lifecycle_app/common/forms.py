"""The base of every wizard step form."""

from __future__ import annotations

from typing import Any

from django import forms


class StepForm(forms.Form):
    """A wizard step form: `answers()` returns its validated data, ready for JSON."""

    def __init__(self, *args: Any, project: Any = None, **kwargs: Any) -> None:
        self.project = project
        super().__init__(*args, **kwargs)

    def answers(self) -> dict[str, Any]:
        return dict(self.cleaned_data)
