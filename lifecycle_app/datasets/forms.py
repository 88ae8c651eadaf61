"""Dataset forms: upload or paste, field mapping, rename."""

from __future__ import annotations

from typing import Any

from django import forms

LICENCE_HELP = (
    "The data's licence, as its source states it (e.g. CC BY-SA 4.0, MIT, internal use "
    "only). Model cards of models trained on it name it."
)


class DatasetUploadForm(forms.Form):
    file = forms.FileField(
        required=False,
        allow_empty_file=True,  # dataset_io names the problem ("The file is empty")
        help_text="JSON Lines, JSON (an array of objects), CSV or TSV, UTF-8. "
        "With a validation or test file below, this is the train file.",
    )
    validation_file = forms.FileField(
        label="Validation file (optional)",
        required=False,
        allow_empty_file=True,
        help_text="When the data comes split (train / dev / test files), upload each split: "
        "its rows keep their split instead of a random one.",
    )
    test_file = forms.FileField(
        label="Test file (optional)",
        required=False,
        allow_empty_file=True,
        help_text="Published scores are usually on the test file: keep it as the test split.",
    )
    text = forms.CharField(
        label="…or paste rows",
        required=False,
        strip=False,
        max_length=5_000_000,
        widget=forms.Textarea(
            attrs={"rows": 5, "placeholder": '{"input": "...", "target": "..."}'}
        ),
    )
    name = forms.CharField(max_length=120, required=False, help_text="Defaults to the file name.")
    licence = forms.CharField(max_length=200, required=False, help_text=LICENCE_HELP)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        has_file = bool(cleaned.get("file"))
        has_text = bool((cleaned.get("text") or "").strip())
        has_splits = bool(cleaned.get("validation_file") or cleaned.get("test_file"))
        if has_file and has_text:
            raise forms.ValidationError("Upload a file or paste rows, not both.")
        if has_splits and not has_file:
            raise forms.ValidationError(
                "With a validation or test file, put the train file in the first field."
            )
        if not has_file and not has_text and "file" not in self.errors:
            raise forms.ValidationError("Choose a file to upload or paste some rows.")
        return cleaned


class DatasetMappingForm(forms.Form):
    name = forms.CharField(max_length=120)
    licence = forms.CharField(max_length=200, required=False, help_text=LICENCE_HELP)
    split_field = forms.ChoiceField(
        label="Split column",
        required=False,
        help_text="A column whose values are train, validation (or dev, val) and test keeps "
        "the split the data comes with; without one, the rows are split at random below.",
    )
    input_field = forms.ChoiceField(label="Input field")
    target_field = forms.ChoiceField(label="Target field")
    classification = forms.BooleanField(
        required=False,
        label="Classification (the target is a label; split stratified by label)",
    )
    seed = forms.IntegerField(initial=42, min_value=0, max_value=2**31 - 1)
    train = forms.FloatField(label="Train", initial=0.8, min_value=0.0, max_value=1.0)
    validation = forms.FloatField(label="Validation", initial=0.1, min_value=0.0, max_value=1.0)
    test = forms.FloatField(label="Test", initial=0.1, min_value=0.0, max_value=1.0)

    def __init__(self, *args: Any, fields: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = [(f, f) for f in fields]
        self.fields["input_field"].choices = choices  # type: ignore[attr-defined]
        self.fields["target_field"].choices = choices  # type: ignore[attr-defined]
        self.fields["split_field"].choices = [  # type: ignore[attr-defined]
            ("", "None: split at random"),
            *choices,
        ]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        inp, tgt = cleaned.get("input_field"), cleaned.get("target_field")
        if inp and tgt and inp == tgt and inp != "messages":
            self.add_error("target_field", "The target must be a different field from the input.")
        split = cleaned.get("split_field")
        if split and split in (inp, tgt):
            self.add_error("split_field", "The split column must be another column.")
        parts = [cleaned.get(k) for k in ("train", "validation", "test")]
        if all(p is not None for p in parts):
            total = sum(p for p in parts if p is not None)
            if abs(total - 1.0) > 1e-6:
                self.add_error(
                    None, f"The split fractions must add up to 1 (they add up to {total:g})."
                )
            elif not cleaned["train"]:
                self.add_error("train", "The train split cannot be empty.")
        return cleaned


class DatasetRenameForm(forms.Form):
    name = forms.CharField(max_length=120)
