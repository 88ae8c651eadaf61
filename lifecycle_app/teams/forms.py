"""Forms of the people around a project: sign-up, invitations, roles, share links."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.forms import UserCreationForm
from django.contrib.auth.models import User

from lifecycle_app.projects.models import Role
from lifecycle_app.teams.services import SHARE_LIFETIMES


class InviteForm(forms.Form):
    identifier = forms.CharField(
        label="Username or email",
        max_length=254,
        widget=forms.TextInput(
            attrs={"autocomplete": "off", "placeholder": "bob or bob@example.com"}
        ),
    )
    role = forms.ChoiceField(choices=Role.choices, initial=Role.EDITOR)


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class ShareLinkForm(forms.Form):
    label = forms.CharField(
        label="Label (optional)",
        max_length=120,
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "e.g. For the review board"}),
    )
    lifetime = forms.ChoiceField(
        label="Expires",
        choices=[
            ("1d", "After 1 day"),
            ("7d", "After 7 days"),
            ("30d", "After 30 days"),
            ("never", "Never (until revoked)"),
        ],
        initial="7d",
    )

    def clean_lifetime(self) -> str:
        value: str = self.cleaned_data["lifetime"]
        assert value in SHARE_LIFETIMES
        return value


class ProjectDeleteForm(forms.Form):
    confirm = forms.CharField(label="Type the project's name to confirm", max_length=120)

    def __init__(self, *args: Any, project_name: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.project_name = project_name

    def clean_confirm(self) -> str:
        value: str = self.cleaned_data["confirm"].strip()
        if value != self.project_name:
            raise forms.ValidationError("That is not the project's name.")
        return value


class SignupForm(UserCreationForm):  # type: ignore[type-arg]
    email = forms.EmailField(
        required=False,
        help_text="Optional. Teammates can add you to a project by this address instead of your username; nothing is ever sent to it.",
    )

    class Meta(UserCreationForm.Meta):  # type: ignore[name-defined]
        model = User
        fields = ("username", "email")
