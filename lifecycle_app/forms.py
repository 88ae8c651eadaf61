from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from django import forms
from django.contrib.auth.forms import UserCreationForm
from django.contrib.auth.models import User
from django.forms import BaseFormSet, formset_factory
from pydantic import ValidationError as PydanticValidationError

from lifecycle_app.guide import METRICS, TASK_TYPES
from lifecycle_app.models import BaseModel, Dataset, PromptTemplate
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


class SignupForm(UserCreationForm):  # type: ignore[type-arg]
    email = forms.EmailField(required=False, help_text="Optional; used for nothing yet.")

    class Meta(UserCreationForm.Meta):  # type: ignore[name-defined]
        model = User
        fields = ("username", "email")


class ProjectForm(forms.Form):
    name = forms.CharField(max_length=120, strip=True)
    description = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}), required=False, max_length=2000
    )


class StepForm(forms.Form):
    """A wizard step form: `answers()` returns its validated data, ready for JSON."""

    def __init__(self, *args: Any, project: Any = None, **kwargs: Any) -> None:
        self.project = project
        super().__init__(*args, **kwargs)

    def answers(self) -> dict[str, Any]:
        return dict(self.cleaned_data)


class ExampleForm(forms.Form):
    input = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=4000)
    output = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=4000)


MIN_EXAMPLES = 3
MAX_EXAMPLES = 20


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
    success_metric = forms.ChoiceField(choices=[(k, v.label) for k, v in METRICS.items()])
    metric_target = forms.FloatField(
        label="Target", help_text="The score a candidate must reach to ship."
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


class ModelPickForm(StepForm):
    base_model = forms.ModelChoiceField(
        queryset=BaseModel.objects.catalog(),
        to_field_name="slug",
        widget=forms.RadioSelect,
        empty_label=None,
        error_messages={"required": "Pick one model from the catalog."},
    )

    def answers(self) -> dict[str, Any]:
        return {"base_model": self.cleaned_data["base_model"].slug}


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
            field.queryset = BaseModel.objects.for_project(self.project)

    def clean_repetition_penalty(self) -> float:
        value = self.cleaned_data.get("repetition_penalty")
        return 1.1 if value is None else float(value)

    def _check_context(self, cleaned: dict[str, Any]) -> None:
        model: BaseModel | None = cleaned.get("base_model")
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
        queryset=BaseModel.objects.all(),
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

    def template_fields(self) -> dict[str, Any]:
        return {
            k: self.cleaned_data[k]
            for k in ("instruction", "example_format", "body", "use_chat_template")
        }


class TrialForm(GenerationSettingsForm):
    """A prompt trial: a template over N rows of the validation or test split."""

    base_model = forms.ModelChoiceField(
        label="Model", queryset=BaseModel.objects.all(), to_field_name="slug", empty_label=None
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
        ],
        initial="first",
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
        self.fields["template"].label_from_instance = lambda t: f"{t.name} v{t.version}"  # type: ignore[attr-defined]
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
                f"Template '{template.name}' v{template.version} has no {{examples}} "
                "placeholder, so examples would not reach the prompt: use 0 shots, or add "
                "{examples} to the template.",
            )
        if self.errors:
            return cleaned
        self.params = self._params(TrialParams, self.param_data())
        return cleaned

    def param_data(self) -> dict[str, Any]:
        from lifecycle_app.prompting import snapshot

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
        from lifecycle_app.prompting import PromptingError, build_for_trial

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


class DatasetUploadForm(forms.Form):
    file = forms.FileField(
        required=False,
        allow_empty_file=True,  # data.validation names the problem ("The file is empty")
        help_text="JSON Lines, JSON (an array of objects), CSV or TSV, UTF-8.",
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

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        has_file = bool(cleaned.get("file"))
        has_text = bool((cleaned.get("text") or "").strip())
        if has_file and has_text:
            raise forms.ValidationError("Upload a file or paste rows, not both.")
        if not has_file and not has_text and "file" not in self.errors:
            raise forms.ValidationError("Choose a file to upload or paste some rows.")
        return cleaned


class DatasetMappingForm(forms.Form):
    name = forms.CharField(max_length=120)
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

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        inp, tgt = cleaned.get("input_field"), cleaned.get("target_field")
        if inp and tgt and inp == tgt and inp != "messages":
            self.add_error("target_field", "The target must be a different field from the input.")
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


HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?$")


def _config_problem(config_path: Path, shown: str) -> str | None:
    """What is wrong with a model's config.json, read as plain JSON (no transformers here)."""
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        return f"{shown} could not be read: {exc}."
    except json.JSONDecodeError as exc:
        return f"{shown}/config.json is not valid JSON (line {exc.lineno}: {exc.msg})."
    if not isinstance(config, dict) or not isinstance(config.get("model_type"), str):
        return f"{shown}/config.json has no model_type, so its architecture is unknown."
    if config.get("auto_map"):
        return (
            f"{shown} needs custom code from its authors (auto_map in config.json); "
            "Lifecycle Studio keeps trust_remote_code off, so it cannot be added."
        )
    return None


class AddModelForm(forms.Form):
    source = forms.ChoiceField(
        choices=[
            ("local", "A folder on this machine"),
            ("hub", "A Hugging Face id already cached here"),
        ]
    )
    location = forms.CharField(
        label="Folder or id",
        max_length=500,
        help_text="e.g. /data/models/my-llama or HuggingFaceTB/SmolLM2-360M-Instruct",
    )
    name = forms.CharField(
        max_length=120, required=False, help_text="Defaults to the folder or id."
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        source, location = cleaned.get("source"), (cleaned.get("location") or "").strip()
        if not source or not location:
            return cleaned
        if source == "local":
            path = Path(location).expanduser()
            if not path.exists():
                self.add_error("location", f"There is no folder at {location}.")
            elif not path.is_dir():
                self.add_error(
                    "location", f"{location} is a file; give the folder that holds config.json."
                )
            elif not (path / "config.json").is_file():
                self.add_error(
                    "location",
                    f"{location} has no config.json, so it is not a Hugging Face model folder.",
                )
            elif problem := _config_problem(path / "config.json", location):
                self.add_error("location", problem)
            location = str(path.resolve())
        else:
            from huggingface_hub import try_to_load_from_cache

            if not HUB_ID.match(location):
                self.add_error("location", f"'{location}' is not a Hugging Face id (owner/name).")
                return cleaned
            cached = try_to_load_from_cache(location, "config.json")
            if not isinstance(cached, str):
                self.add_error(
                    "location",
                    f"The model '{location}' is not on this machine, and this machine cannot "
                    "download models (no model hub access). Copy its folder here and add it "
                    "as a local folder.",
                )
            elif problem := _config_problem(Path(cached), location):
                self.add_error("location", problem)
        cleaned["location"] = location
        if not self.errors:
            existing = BaseModel.objects.catalog().filter(source=source, location=location).first()
            if existing:
                self.add_error(
                    "location", f"This model is already in the catalog as {existing.name}."
                )
        return cleaned


class PlannerForm(StepForm):
    base_model = forms.ModelChoiceField(
        label="Model", queryset=BaseModel.objects.catalog(), to_field_name="slug", empty_label=None
    )
    method = forms.ChoiceField(
        choices=[
            ("inference", "Inference only"),
            ("full", "Full fine-tuning"),
            ("lora", "LoRA"),
            ("prompt_tuning", "Prompt tuning"),
        ],
        initial="lora",
    )
    dtype = forms.ChoiceField(
        label="Precision",
        choices=[("fp32", "FP32"), ("bf16", "BF16"), ("fp16", "FP16"), ("int8", "INT8")],
        initial="fp32",
    )
    lora_r = forms.IntegerField(label="LoRA rank", initial=8, min_value=1, max_value=512)
    lora_targets = forms.MultipleChoiceField(
        label="LoRA target modules", required=False, widget=forms.CheckboxSelectMultiple
    )
    num_virtual_tokens = forms.IntegerField(
        label="Prompt-tuning tokens", initial=20, min_value=1, max_value=1000
    )
    batch_size = forms.IntegerField(label="Batch size", initial=4, min_value=1, max_value=4096)
    seq_len = forms.IntegerField(
        label="Sequence length", initial=256, min_value=1, max_value=1_000_000
    )
    optimizer = forms.ChoiceField(
        choices=[("adamw", "AdamW"), ("sgd", "SGD with momentum")], initial="adamw"
    )
    gradient_checkpointing = forms.BooleanField(label="Gradient checkpointing", required=False)
    memory_gb = forms.FloatField(
        label="Memory available (GB)",
        initial=24,
        min_value=0.1,
        max_value=100_000,
        help_text="RAM for CPU, or the GPU's memory.",
    )
    accelerator = forms.ChoiceField(
        label="Pretraining accelerator",
        choices=[("h100", "NVIDIA H100"), ("a100", "NVIDIA A100"), ("cpu", "This CPU")],
        initial="h100",
    )
    n_devices = forms.IntegerField(label="Devices", initial=1, min_value=1, max_value=100_000)
    efficiency = forms.FloatField(
        label="Efficiency (MFU)",
        initial=0.4,
        min_value=0.01,
        max_value=1.0,
        help_text="Share of peak FLOP/s really achieved.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        slug = self.data.get("base_model") if self.is_bound else self.initial.get("base_model")
        model = BaseModel.objects.catalog().filter(slug=slug).first() if slug else None
        model = (
            model
            or BaseModel.objects.catalog().exclude(shape={}).order_by("is_test_model", "id").first()
        )
        if model is not None and not self.is_bound and not self.initial.get("base_model"):
            self.initial["base_model"] = model.slug
        targets = (model.shape or {}).get("linear_modules", {}) if model else {}
        names = sorted(t for t in targets if t != "lm_head")
        self.fields["lora_targets"].choices = [(t, t) for t in names]  # type: ignore[attr-defined]
        if not self.is_bound and not self.initial.get("lora_targets"):
            self.initial["lora_targets"] = [t for t in ("q_proj", "v_proj") if t in names]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        model: BaseModel | None = cleaned.get("base_model")
        if model is not None and not model.shape:
            self.add_error(
                "base_model", f"{model.name} has no recorded shape yet; run prepare_models."
            )
        if cleaned.get("method") == "lora" and not cleaned.get("lora_targets"):
            self.add_error("lora_targets", "Pick at least one module for LoRA.")
        if cleaned.get("method") == "full" and cleaned.get("dtype") == "int8":
            self.add_error(
                "dtype", "INT8 weights cannot be fully fine-tuned; use LoRA or another precision."
            )
        return cleaned

    def answers(self) -> dict[str, Any]:
        data = dict(self.cleaned_data)
        data["base_model"] = data["base_model"].slug
        return data
