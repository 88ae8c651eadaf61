"""The Scope step's form: task type, examples, success metric, constraints."""

from __future__ import annotations

from typing import Any

from django import forms
from django.forms import BaseFormSet, formset_factory

from lifecycle_app.common.forms import StepForm
from lifecycle_app.stages.scope.guide import METRICS, TASK_TYPES
from lifecycle_app.stages.scope.rules import MAX_EXAMPLES, MIN_EXAMPLES


class ExampleForm(forms.Form):
    input = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=4000)
    output = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=4000)


class BaseExampleFormSet(BaseFormSet):  # type: ignore[type-arg]
    """Blank rows are allowed anywhere; what counts is how many rows are filled in."""

    def _construct_form(self, i: int, **kwargs: Any) -> ExampleForm:
        return super()._construct_form(i, empty_permitted=True, **kwargs)  # type: ignore[misc]

    def clean(self) -> None:
        filled = [f for f in self.forms if f.has_changed()]
        if not any(f.errors for f in self.forms) and len(filled) < MIN_EXAMPLES:
            raise forms.ValidationError(
                f"Add at least {MIN_EXAMPLES} examples (input and output); you have {len(filled)}."
            )


ExampleFormSet = formset_factory(
    ExampleForm,
    formset=BaseExampleFormSet,
    extra=0,
    min_num=MIN_EXAMPLES,
    max_num=MAX_EXAMPLES,
    validate_max=True,
)


class ScopeForm(StepForm):
    task_type = forms.ChoiceField(choices=[(k, v.label) for k, v in TASK_TYPES.items()])
    use_case = forms.CharField(
        label="Use case",
        widget=forms.Textarea(attrs={"rows": 3}),
        min_length=20,
        max_length=2000,
        help_text="As narrow as you can: who uses it, on what input, to produce what.",
    )
    # Each metric names its scale: ROUGE and accuracy run 0-1, BLEU and chrF 0-100.
    success_metric = forms.ChoiceField(
        choices=[(k, f"{v.label} ({v.low:g}–{v.high:g})") for k, v in METRICS.items()]
    )
    metric_target = forms.FloatField(
        label="Target",
        help_text="The score a candidate must reach to ship, on the metric's own scale: "
        "0–1 for ROUGE, accuracy, F1 and exact match (0.35, not 35); 0–100 for BLEU and chrF.",
    )
    max_latency_ms = forms.IntegerField(
        label="Latency budget (ms)", required=False, min_value=1, max_value=600_000
    )
    max_cost_per_1k = forms.DecimalField(
        label="Cost budget per 1,000 requests (USD)",
        required=False,
        min_value=0,
        max_digits=10,
        decimal_places=4,
    )
    privacy = forms.ChoiceField(
        choices=[
            ("public", "Public data"),
            ("internal", "Internal data"),
            ("confidential", "Confidential: must stay on our own hardware"),
        ]
    )
    hardware = forms.ChoiceField(
        label="Serving hardware",
        choices=[
            ("cpu", "CPU only"),
            ("single_gpu", "One GPU"),
            ("multi_gpu", "Several GPUs"),
            ("any", "Not decided"),
        ],
    )

    def __init__(self, data: Any = None, *args: Any, **kwargs: Any) -> None:
        examples = (kwargs.get("initial") or {}).get("examples") or None
        if data is not None and "add_example" in data:
            # "Add another example" re-renders the step with one more empty row.
            data = data.copy()
            total = data.get("ex-TOTAL_FORMS", "0")
            rows = int(total) + 1 if total.isdigit() else MIN_EXAMPLES
            data["ex-TOTAL_FORMS"] = str(min(rows, MAX_EXAMPLES))
        super().__init__(data, *args, **kwargs)
        self.examples = ExampleFormSet(data, prefix="ex", initial=examples)

    @property
    def adding_example(self) -> bool:
        return self.is_bound and "add_example" in self.data

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        metric = METRICS.get(cleaned.get("success_metric", ""))
        target = cleaned.get("metric_target")
        if metric and target is not None and not (metric.low <= target <= metric.high):
            self.add_error(
                "metric_target",
                f"{metric.label} ranges from {metric.low:g} to {metric.high:g}.",
            )
        return cleaned

    def is_valid(self) -> bool:
        main = super().is_valid()
        examples = self.examples.is_valid()
        if self.adding_example:
            # Adding a row is not a save: re-render without shouting about blank fields.
            self._errors.clear()  # type: ignore[attr-defined]
            for form in self.examples.forms:
                form._errors.clear()  # type: ignore[attr-defined]
            self.examples._non_form_errors = self.examples.error_class()  # type: ignore[attr-defined]
            return False
        return main and examples

    def answers(self) -> dict[str, Any]:
        data = dict(self.cleaned_data)
        if data.get("max_cost_per_1k") is not None:
            data["max_cost_per_1k"] = str(data["max_cost_per_1k"])
        data["examples"] = [
            {"input": f.cleaned_data["input"], "output": f.cleaned_data["output"]}
            for f in self.examples.forms
            if f.cleaned_data and not f.cleaned_data.get("DELETE")
        ]
        return data
