"""The Prompt stage's forms: generation settings, the playground, templates and trials."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from pydantic import ValidationError as PydanticValidationError

from lifecycle_app.catalog.models import CatalogModel
from lifecycle_app.common.forms import StepForm
from lifecycle_app.common.labels import versioned_name
from lifecycle_app.datasets.models import Dataset
from lifecycle_app.stages.prompt.building import PromptingError, build_for_trial, snapshot
from lifecycle_app.stages.prompt.models import PromptTemplate
from workers.ml.params import (
    MAX_NEW_TOKENS_LIMIT,
    MAX_PROMPT_CHARS,
    MAX_SHOTS,
    MAX_TRIAL_ROWS,
    GenerateParams,
    GenerationSettings,
    TrialParams,
)
from workers.ml.prompts import TemplateSpec, template_problems


class GenerationSettingsForm(StepForm):
    """The generation settings, each explained in a sentence (playground and trials)."""

    max_new_tokens = forms.IntegerField(
        label="Max new tokens",
        initial=64,
        min_value=1,
        max_value=MAX_NEW_TOKENS_LIMIT,
        help_text="The longest answer the model may write, in tokens (about ¾ of a word each).",
    )
    decoding = forms.ChoiceField(
        choices=[("greedy", "Greedy (deterministic)"), ("sampling", "Sampling")],
        initial="greedy",
        help_text="Greedy always takes the likeliest next token; sampling draws one at random.",
    )
    temperature = forms.FloatField(
        initial=0.7,
        min_value=0.01,
        max_value=2.0,
        help_text="Sampling only: below 1 sharpens the choice, above 1 makes it more random.",
    )
    top_k = forms.IntegerField(
        label="Top-k",
        initial=50,
        min_value=0,
        max_value=1000,
        help_text="Sampling only: draw from the k likeliest tokens; 0 turns it off.",
    )
    top_p = forms.FloatField(
        label="Top-p",
        initial=0.95,
        min_value=0.01,
        max_value=1.0,
        help_text="Sampling only: draw from the smallest set of tokens whose odds add up to p.",
    )
    seed = forms.IntegerField(
        initial=0,
        min_value=0,
        max_value=2**31 - 1,
        help_text="The same seed and settings give the same outputs again.",
    )
    repetition_penalty = forms.FloatField(
        label="Repetition penalty",
        initial=1.1,
        min_value=1.0,
        max_value=2.0,
        required=False,
        help_text="Makes repeating a token less likely; 1.0 turns it off, 1.1 stops small "
        "models looping.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields.get("base_model")
        if isinstance(field, forms.ModelChoiceField):
            # The catalog and this project's fine-tuned candidates; never another project's.
            field.queryset = CatalogModel.objects.for_project(self.project).pickable()

    def clean_repetition_penalty(self) -> float:
        value = self.cleaned_data.get("repetition_penalty")
        return 1.1 if value is None else float(value)

    def _check_context(self, cleaned: dict[str, Any]) -> None:
        model: CatalogModel | None = cleaned.get("base_model")
        max_new = cleaned.get("max_new_tokens")
        if model and max_new and model.context_length and max_new >= model.context_length:
            self.add_error(
                "max_new_tokens",
                f"{model.name} has a context window of {model.context_length} tokens; "
                "ask for fewer new tokens.",
            )

    def _params(self, params_class: type[Any], data: dict[str, Any]) -> Any:
        """Validate once more with the job's own parameter model (a second line of defence)."""
        try:
            return params_class(**data)
        except PydanticValidationError as exc:
            for err in exc.errors():
                self.add_error(None, str(err["msg"]).removeprefix("Value error, "))
        return None


class GenerateForm(GenerationSettingsForm):
    base_model = forms.ModelChoiceField(
        label="Model",
        queryset=CatalogModel.objects.all(),
        to_field_name="slug",
        empty_label=None,
    )
    prompt = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 5}),
        max_length=MAX_PROMPT_CHARS,
        strip=False,  # leading/trailing whitespace can matter to a prompt
        error_messages={"required": "Enter a prompt."},
    )
    use_chat_template = forms.BooleanField(
        label="Wrap the prompt in the model's chat template", required=False, initial=True
    )

    field_order = ["base_model", "prompt"]

    def clean_prompt(self) -> str:
        prompt: str = self.cleaned_data["prompt"]
        if not prompt.strip():
            raise forms.ValidationError("Enter a prompt.")
        return prompt

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        self._check_context(cleaned)
        if not self.errors:
            self.params = self._params(GenerateParams, self.answers())
        return cleaned

    def answers(self) -> dict[str, Any]:
        data = {k: v for k, v in self.cleaned_data.items() if k != "base_model"}
        data["model_ref"] = self.cleaned_data["base_model"].slug
        return data


class PromptTemplateForm(forms.Form):
    """A prompt template; see workers/ml/prompts.py for what the placeholders mean."""

    name = forms.CharField(max_length=80, strip=True)
    instruction = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}),
        required=False,
        max_length=MAX_PROMPT_CHARS,
        strip=False,
        help_text="What the model should do; it replaces {instruction} in the prompt.",
    )
    example_format = forms.CharField(
        label="Example format",
        widget=forms.Textarea(attrs={"rows": 3}),
        required=False,
        max_length=MAX_PROMPT_CHARS,
        strip=False,
        help_text="How one worked example (shot) is written: {input} and {target} are "
        "the train row's fields. Shots are separated by a blank line.",
    )
    body = forms.CharField(
        label="Prompt",
        widget=forms.Textarea(attrs={"rows": 5}),
        max_length=MAX_PROMPT_CHARS,
        strip=False,
        help_text="The whole prompt: {instruction}, {examples} (the shots; empty for "
        "zero-shot) and {input} (the row to answer).",
    )
    use_chat_template = forms.BooleanField(
        label="Wrap the prompt in the model's chat template (for chat models)",
        required=False,
        initial=True,
    )
    shot_style = forms.ChoiceField(
        label="Write the shots",
        choices=[
            (
                "chat",
                "As earlier chat turns (user: the prompt with the example's input; "
                "assistant: its target)",
            ),
            ("inline", "Inline, with the example format, inside the one message"),
        ],
        initial="chat",
        required=False,  # left out: chat turns (inline anyway where there is no chat template)
        help_text="Chat models learn from conversations: a shot written as a finished "
        "exchange is an example to follow, while shots pasted into one message are text to "
        "continue. Plain models without a chat template always get inline shots.",
    )
    note = forms.CharField(
        label="What changed", max_length=200, required=False, help_text="Optional."
    )

    def __init__(self, *args: Any, editing: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if editing:  # a new version keeps its template's name
            self.fields["name"].disabled = True

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if "body" in cleaned:
            spec = TemplateSpec(
                instruction=cleaned.get("instruction", ""),
                example_format=cleaned.get("example_format", ""),
                body=cleaned["body"],
            )
            for field, problems in template_problems(spec).items():
                for problem in problems:
                    self.add_error(field, problem)
        return cleaned

    def clean_shot_style(self) -> str:
        return str(self.cleaned_data.get("shot_style") or "chat")

    def template_fields(self) -> dict[str, Any]:
        return {
            k: self.cleaned_data[k]
            for k in ("instruction", "example_format", "body", "use_chat_template", "shot_style")
        }


class TrialForm(GenerationSettingsForm):
    """A prompt trial: a template over N rows of the validation or test split."""

    base_model = forms.ModelChoiceField(
        label="Model", queryset=CatalogModel.objects.all(), to_field_name="slug", empty_label=None
    )
    dataset = forms.ModelChoiceField(
        queryset=Dataset.objects.none(),
        empty_label=None,
        error_messages={"required": "Upload a dataset first: trials run over its rows."},
    )
    split = forms.ChoiceField(
        label="Evaluation split",
        choices=[
            ("validation", "Validation"),
            ("test", "Test"),
            ("train", "Train (zero-shot: answers to rate for alignment)"),
        ],
        initial="validation",
        help_text="Trials never read this split's rows as examples. Train rows are for "
        "collecting answers to rate, zero-shot only.",
    )
    n_rows = forms.IntegerField(
        label="Rows",
        initial=50,
        min_value=1,
        max_value=MAX_TRIAL_ROWS,
        help_text="How many rows of the split to run (the first N, the same every time).",
    )
    template = forms.ModelChoiceField(
        queryset=PromptTemplate.objects.none(),
        empty_label=None,
        error_messages={"required": "Create a prompt template first."},
    )
    shots = forms.IntegerField(
        label="Shots",
        initial=0,
        min_value=0,
        max_value=MAX_SHOTS,
        help_text="Worked examples from the train split: 0 is zero-shot, 1 one-shot, "
        "more is few-shot.",
    )
    shot_mode = forms.ChoiceField(
        label="Pick the examples",
        choices=[
            ("first", "The first rows of the train split"),
            ("random", "At random (seeded)"),
            ("manual", "By hand (line numbers)"),
            ("similar", "The most similar to each row (BM25 over the inputs)"),
        ],
        initial="first",
        help_text="“Most similar” picks, for each row, the train rows whose inputs share "
        "the most words with it (never the row itself or a copy of it); the seed breaks ties.",
    )
    shot_seed = forms.IntegerField(
        label="Example seed", initial=0, min_value=0, max_value=2**31 - 1
    )
    shot_lines = forms.CharField(
        label="Example lines",
        required=False,
        max_length=200,
        help_text="For “by hand”: the train rows' line numbers, e.g. 3, 17, 42.",
    )
    overflow = forms.ChoiceField(
        label="Prompts longer than the context window",
        choices=[
            ("ask", "Warn me before running"),
            ("truncate", "Truncate the row's input to fit"),
            ("skip", "Skip those rows"),
        ],
        initial="ask",
        widget=forms.RadioSelect,
    )

    field_order = ["base_model", "dataset", "split", "n_rows", "template", "shots"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.built: Any = None
        self.params: TrialParams | None = None
        if self.project is not None:
            datasets = Dataset.objects.filter(project=self.project)
            self.fields["dataset"].queryset = datasets  # type: ignore[attr-defined]
            self.fields["template"].queryset = PromptTemplate.objects.filter(  # type: ignore[attr-defined]
                project=self.project
            )
        self.fields["max_new_tokens"].initial = 48

    def clean_shot_lines(self) -> list[int]:
        text = self.cleaned_data.get("shot_lines") or ""
        parts = [p for p in re.split(r"[\s,;]+", text) if p]
        if not all(p.isdigit() for p in parts):
            raise forms.ValidationError("Write line numbers separated by commas, e.g. 3, 17, 42.")
        return [int(p) for p in parts][: MAX_SHOTS + 1]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        self._check_context(cleaned)
        if cleaned.get("shot_mode") == "manual" and "shot_lines" in cleaned:
            lines = cleaned["shot_lines"]
            if not lines and cleaned.get("shots"):
                self.add_error("shot_lines", "Write the line numbers of the examples to use.")
            elif len(lines) > MAX_SHOTS:
                self.add_error("shot_lines", f"Pick at most {MAX_SHOTS} examples.")
            else:
                cleaned["shots"] = len(lines)
        if cleaned.get("split") == "train" and cleaned.get("shots"):
            self.add_error(
                "shots",
                "Examples come from the train split, so a trial over train rows must be "
                "zero-shot (0 shots).",
            )
        template = cleaned.get("template")
        if template is not None and cleaned.get("shots") and "{examples}" not in template.body:
            self.add_error(
                "shots",
                f"Template '{versioned_name(template.name, template.version)}' has no {{examples}} "
                "placeholder, so examples would not reach the prompt: use 0 shots, or add "
                "{examples} to the template.",
            )
        if self.errors:
            return cleaned
        self.params = self._params(TrialParams, self.param_data())
        return cleaned

    def param_data(self) -> dict[str, Any]:

        c = self.cleaned_data
        dataset: Dataset = c["dataset"]
        return {
            **{k: c[k] for k in GenerationSettings.model_fields if k in c},
            "model_ref": c["base_model"].slug,
            "dataset_id": dataset.id,
            "split": c["split"],
            "n_rows": c["n_rows"],
            "shots": c["shots"],
            "shot_mode": c["shot_mode"],
            "shot_seed": c["shot_seed"],
            "shot_lines": c["shot_lines"] if c["shot_mode"] == "manual" else [],
            "overflow": c["overflow"],
            "score_kind": "label" if dataset.classification else "rouge",
            "template": snapshot(c["template"]).model_dump(),
        }

    def preflight(self) -> bool:
        """Build every prompt with the model's tokenizer; False (with errors) when the
        trial cannot run as asked, including prompts over the context window when the
        person has not said what to do with them."""

        assert self.params is not None
        try:
            self.built = build_for_trial(
                base_model=self.cleaned_data["base_model"],
                dataset=self.cleaned_data["dataset"],
                params=self.params,
            )
        except PromptingError as exc:
            self.add_error(None, str(exc))
            return False
        report = self.built.report
        if report.any and self.params.overflow == "ask":
            self.add_error(
                "overflow",
                f"{report.describe(self.built.rows)} Choose to truncate or skip those rows, "
                "or use fewer shots or fewer new tokens.",
            )
            return False
        return True
