"""Forms of the application stage: a version's settings, a question, an evaluation set,
an app evaluation and a question's review."""

from __future__ import annotations

from typing import Any

from django import forms

from lifecycle_app.stages.integrate.app.candidates import ModelOption
from lifecycle_app.stages.integrate.app.models import VERSION_FIELDS, ReasoningAid, RetrievalMode
from workers.ml.application.config import DEFAULT_TEMPLATE, MAX_TOP_K

MAX_APP_NEW_TOKENS = 512
MAX_QUESTION_CHARS = 4000


class VersionForm(forms.Form):
    """The settings of an application version. `name` only when creating the app."""

    name = forms.CharField(max_length=80, required=False, label="Application name")
    model = forms.ChoiceField(
        label="Model",
        help_text="A catalog model, one of the project's fine-tuned or aligned models, or an exported variant.",
    )
    template = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 6}),
        initial=DEFAULT_TEMPLATE,
        help_text="{context} becomes the retrieved passages, {input} the question.",
    )
    retrieval = forms.ChoiceField(choices=RetrievalMode.choices, initial=RetrievalMode.HYBRID)
    top_k = forms.IntegerField(
        label="Passages (top k)", min_value=1, max_value=MAX_TOP_K, initial=4
    )
    threshold = forms.FloatField(
        required=False,
        min_value=0.0,
        label="Score threshold",
        help_text="Drop weaker passages: BM25 score for BM25, cosine similarity (0 to 1) for dense and hybrid. Empty: keep all.",
    )
    cite = forms.BooleanField(
        required=False, initial=True, label="Number the passages and ask for citations like [1]"
    )
    reasoning = forms.ChoiceField(
        choices=ReasoningAid.choices, initial=ReasoningAid.NONE, label="Reasoning aid"
    )
    fallback_min_score = forms.FloatField(
        required=False,
        min_value=0.0,
        label="Human fallback below",
        help_text='Answer "I don\'t know" and record the question for review when the best passage scores below this (BM25 score, or cosine similarity for dense and hybrid). With retrieval on, finding nothing always falls back.',
    )
    max_new_tokens = forms.IntegerField(
        min_value=1, max_value=MAX_APP_NEW_TOKENS, initial=96, label="Max new tokens"
    )
    note = forms.CharField(max_length=200, required=False, label="What changed (optional)")

    def __init__(
        self, *args: Any, options: list[ModelOption], creating: bool, has_index: bool, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.options = {o.key: o for o in options}
        self.creating = creating
        self.has_index = has_index
        self.fields["model"].choices = [(o.key, o.label) for o in options]  # type: ignore[attr-defined]
        self.fields["name"].required = creating
        if not creating:
            del self.fields["name"]

    def clean_template(self) -> str:
        text: str = self.cleaned_data["template"]
        missing = [slot for slot in ("{context}", "{input}") if slot not in text]
        if missing:
            raise forms.ValidationError(
                f"The template must contain {' and '.join(missing)}: "
                "{context} is where the passages go, {input} where the question goes."
            )
        return text

    def clean_retrieval(self) -> str:
        mode: str = self.cleaned_data["retrieval"]
        if mode != RetrievalMode.OFF and not self.has_index:
            raise forms.ValidationError(
                "This project has no knowledge index yet: upload documents and build the index, or set retrieval to Off."
            )
        return mode

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if (
            data.get("retrieval") == RetrievalMode.OFF
            and data.get("fallback_min_score") is not None
        ):
            self.add_error(
                "fallback_min_score",
                "The fallback threshold needs retrieval: with retrieval off there is no passage to score.",
            )
        return data

    @property
    def option(self) -> ModelOption:
        return self.options[self.cleaned_data["model"]]

    def version_fields(self) -> dict[str, Any]:
        return {k: self.cleaned_data[k] for k in (*VERSION_FIELDS, "note")}


class AskForm(forms.Form):
    version = forms.ChoiceField(label="Version")
    question = forms.CharField(
        max_length=MAX_QUESTION_CHARS,
        widget=forms.Textarea(
            attrs={"rows": 3, "placeholder": "Ask something your documents answer"}
        ),
    )

    def __init__(self, *args: Any, versions: list[Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["version"].choices = [(str(v.id), str(v)) for v in versions]  # type: ignore[attr-defined]

    def clean_question(self) -> str:
        text = self.cleaned_data["question"].strip()
        if not text:
            raise forms.ValidationError("Write a question.")
        return text


class EvalSetUploadForm(forms.Form):
    name = forms.CharField(max_length=80)
    file = forms.FileField(
        help_text="JSON Lines or CSV: question, reference (or answer), and optionally document and passage."
    )


class EvalSetDraftForm(forms.Form):
    name = forms.CharField(max_length=80)
    version = forms.ChoiceField(
        label="Model of version", help_text="Its model drafts the questions."
    )
    n = forms.IntegerField(min_value=1, max_value=50, initial=10, label="Questions to draft")

    def __init__(self, *args: Any, versions: list[Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["version"].choices = [(str(v.id), str(v)) for v in versions]  # type: ignore[attr-defined]


class AppEvaluationForm(forms.Form):
    eval_set = forms.ChoiceField(label="Evaluation set")
    versions = forms.MultipleChoiceField(
        widget=forms.CheckboxSelectMultiple, label="Versions side by side"
    )
    k = forms.IntegerField(min_value=1, max_value=20, initial=5, label="k for recall@k")

    def __init__(
        self, *args: Any, eval_sets: list[Any], versions: list[Any], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.fields["eval_set"].choices = [  # type: ignore[attr-defined]
            (str(s.id), f"{s.name} ({s.n_accepted} accepted)") for s in eval_sets
        ]
        self.fields["versions"].choices = [(str(v.id), str(v)) for v in versions]  # type: ignore[attr-defined]


class ReviewForm(forms.Form):
    action = forms.ChoiceField(choices=[("accept", "Accept"), ("reject", "Reject")])
    question = forms.CharField(max_length=MAX_QUESTION_CHARS, required=False)
    reference = forms.CharField(max_length=MAX_QUESTION_CHARS, required=False)
