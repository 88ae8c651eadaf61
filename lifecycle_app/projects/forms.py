"""Creating a project."""

from __future__ import annotations

from django import forms


class ProjectForm(forms.Form):
    name = forms.CharField(max_length=120, strip=True)
    description = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}), required=False, max_length=2000
    )
