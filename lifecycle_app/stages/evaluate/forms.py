"""The evaluate step's form: which candidates, over which rows of which split."""

from __future__ import annotations

from typing import Any

from django import forms
from pydantic import ValidationError as PydanticValidationError

from lifecycle_app.catalog.models import CatalogModel
from lifecycle_app.common.forms import StepForm
from lifecycle_app.datasets.models import Dataset
from lifecycle_app.jobs.models import Job
from lifecycle_app.stages.evaluate import candidates as evaluating
from lifecycle_app.stages.prompt import building as prompting
from lifecycle_app.stages.prompt.models import PromptTemplate
from workers.ml.params import MAX_CANDIDATES, MAX_TRIAL_ROWS, EvaluateParams, GenerationSettings


class EvaluateForm(StepForm):
    dataset = forms.ModelChoiceField(
        queryset=Dataset.objects.none(),
        empty_label=None,
        error_messages={"required": "Upload a dataset first: evaluation runs over its rows."},
    )
    split = forms.ChoiceField(
        label="Split",
        choices=[("test", "Test"), ("validation", "Validation")],
        initial="test",
        help_text="Every candidate answers the same rows of this split.",
    )
    rows = forms.ChoiceField(
        label="Rows",
        choices=[("sample", "A seeded sample"), ("all", "Every row of the split")],
        initial="sample",
        widget=forms.RadioSelect,
    )
    n_rows = forms.IntegerField(
        label="Sample size", initial=50, min_value=1, max_value=MAX_TRIAL_ROWS
    )
    sample_seed = forms.IntegerField(
        label="Sample seed",
        initial=0,
        min_value=0,
        max_value=2**31 - 1,
        help_text="The same seed picks the same rows, so runs stay comparable.",
    )
    candidates = forms.MultipleChoiceField(
        label="Candidates",
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Pick at least one candidate."},
    )
    template = forms.ModelChoiceField(
        label="Zero-shot template",
        queryset=PromptTemplate.objects.none(),
        empty_label=None,
        help_text="How base models are asked (fine-tuned models use the template they were "
        "trained with; trials keep their own).",
        error_messages={"required": "Create a prompt template first (Prompt engineering)."},
    )
    max_new_tokens = forms.IntegerField(
        label="Max new tokens",
        initial=64,
        min_value=1,
        max_value=512,
        help_text="For base and fine-tuned candidates; trials keep their own settings.",
    )
    decoding = forms.ChoiceField(
        choices=[("greedy", "Greedy"), ("sampling", "Sampling (seeded)")],
        initial="greedy",
    )
    seed = forms.IntegerField(initial=0, min_value=0, max_value=2**31 - 1)
    general_check = forms.BooleanField(
        label="Forgetting check: also score each model on the general-ability set "
        "(40 short questions)",
        required=False,
        initial=True,
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params: EvaluateParams | None = None
        self.sources: list[tuple[CatalogModel | None, Job | None]] = []
        self.row_count = 0
        self.options: list[evaluating.CandidateOption] = []
        if self.project is not None:
            self.fields["dataset"].queryset = Dataset.objects.filter(project=self.project)  # type: ignore[attr-defined]
            self.fields["template"].queryset = PromptTemplate.objects.filter(  # type: ignore[attr-defined]
                project=self.project
            )
            self.options = evaluating.candidate_options(project=self.project)
        self.fields["candidates"].choices = [  # type: ignore[attr-defined]
            (o.key, o.label + (f" — unavailable: {o.unavailable}" if o.unavailable else ""))
            for o in self.options
        ]

    def clean_candidates(self) -> list[str]:
        keys = list(dict.fromkeys(self.cleaned_data.get("candidates") or []))
        if len(keys) > MAX_CANDIDATES:
            raise forms.ValidationError(f"Pick at most {MAX_CANDIDATES} candidates at a time.")
        return keys

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.errors:
            return cleaned
        dataset: Dataset = cleaned["dataset"]
        generation = GenerationSettings(
            max_new_tokens=cleaned["max_new_tokens"],
            decoding=cleaned["decoding"],
            seed=cleaned["seed"],
        )
        specs = []
        for key in cleaned["candidates"]:
            try:
                spec, model, source = evaluating.resolve_candidate(
                    project=self.project,
                    key=key,
                    template=cleaned.get("template"),
                    generation=generation,
                )
            except evaluating.CandidateError as exc:
                self.add_error("candidates", str(exc))
                return cleaned
            specs.append(spec)
            self.sources.append((model, source))
        try:
            self.params = EvaluateParams(
                dataset_id=dataset.id,
                split=cleaned["split"],
                n_rows=cleaned["n_rows"] if cleaned["rows"] == "sample" else None,
                sample_seed=cleaned["sample_seed"],
                task="label" if dataset.classification else "text",
                general_check=bool(cleaned.get("general_check")),
                candidates=specs,
            )
        except PydanticValidationError as exc:
            self.add_error(None, "; ".join(e["msg"] for e in exc.errors()))
            return cleaned
        try:
            self.row_count = len(evaluating.eval_rows(dataset, self.params))
        except prompting.PromptingError as exc:
            self.add_error("split", str(exc))
        return cleaned
