"""The wizard, declared: stages, their steps, and each step's form, template and rule.

Adding a step is adding one `Step` entry. A step without a form is shown as planned.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lifecycle_app import forms
from lifecycle_app.align_forms import AlignForm
from lifecycle_app.deploy_forms import ExportForm, IntegrationChecklistForm, checklist_complete
from lifecycle_app.evaluate_forms import EvaluateForm
from lifecycle_app.finetune_forms import FineTuneForm
from lifecycle_app.models import StageKey


def _has(*keys: str) -> Callable[[dict[str, Any]], bool]:
    return lambda answers: all(answers.get(k) not in (None, "", []) for k in keys)


@dataclass(frozen=True)
class Step:
    slug: str
    title: str
    summary: str
    form_class: type[forms.StepForm] | None = None
    template: str = ""
    is_complete: Callable[[dict[str, Any]], bool] = field(default=lambda answers: False)
    # "answers": a valid POST stores the answers. "job": a valid POST starts a job.
    kind: str = "answers"
    # A live step also reads its form from GET parameters and re-renders as they change.
    live: bool = False

    @property
    def available(self) -> bool:
        return self.form_class is not None


@dataclass(frozen=True)
class StageDef:
    key: StageKey
    title: str
    summary: str
    steps: tuple[Step, ...]


STAGES: tuple[StageDef, ...] = (
    StageDef(
        StageKey.SCOPE,
        "Scope",
        "Define the use case as narrowly as possible.",
        (
            Step(
                "use-case",
                "Define the use case",
                "Task type, examples, success metric and constraints.",
                forms.ScopeForm,
                "wizard/scope.html",
                lambda a: (
                    _has("task_type", "use_case", "success_metric")(a)
                    and len(a.get("examples", [])) >= forms.MIN_EXAMPLES
                ),
            ),
        ),
    ),
    StageDef(
        StageKey.SELECT,
        "Select",
        "Choose an existing model, or see why pretraining your own is rarely warranted.",
        (
            Step(
                "model",
                "Choose a model",
                "Pick a base model from the catalog.",
                forms.ModelPickForm,
                "wizard/select.html",
                _has("base_model"),
            ),
            Step(
                "plan",
                "Plan compute and memory",
                "Memory to run and to train, trainable parameters, pretraining compute.",
                forms.PlannerForm,
                "wizard/planner.html",
                _has("method", "base_model"),
                live=True,
            ),
        ),
    ),
    StageDef(
        StageKey.ADAPT,
        "Adapt and align",
        "Prompt first; then fine-tune, align with human feedback, and evaluate.",
        (
            Step(
                "prompt",
                "Prompt engineering",
                "Zero-, one- and few-shot prompt trials, scored on the evaluation split.",
                forms.TrialForm,
                "wizard/prompt.html",
                _has("succeeded_trial"),
                kind="job",
            ),
            Step(
                "fine-tune",
                "Fine-tuning",
                "Full, LoRA and prompt tuning on your dataset, with live curves.",
                FineTuneForm,
                "wizard/finetune.html",
                _has("succeeded_run"),
                kind="job",
                live=True,
            ),
            Step(
                "align",
                "Align with human feedback",
                "Teammates rate pairs of answers; DPO trains on their preferences.",
                AlignForm,
                "wizard/align.html",
                _has("succeeded_run"),
                kind="job",
            ),
            Step(
                "evaluate",
                "Evaluate",
                "Score every candidate on the same rows: one scorecard, changes against a "
                "baseline, and a forgetting check.",
                EvaluateForm,
                "wizard/evaluate.html",
                _has("succeeded_evaluation"),
                kind="job",
            ),
        ),
    ),
    StageDef(
        StageKey.INTEGRATE,
        "Application integration",
        "Optimize and deploy the model; build the application around it.",
        (
            Step(
                "optimize",
                "Optimize and deploy",
                "Merge, quantize, export; measure size, speed and quality; serve.",
                ExportForm,
                "wizard/optimize.html",
                _has("deployed_variant"),
                kind="job",
            ),
            Step(
                "augment",
                "Integration checklist",
                "Retrieval, reasoning aids, monitoring, human fallback, infrastructure.",
                IntegrationChecklistForm,
                "wizard/integration.html",
                checklist_complete,
            ),
        ),
    ),
)


def stage_def(key: str) -> StageDef | None:
    return next((s for s in STAGES if s.key == key), None)


def step_def(stage_key: str, step_slug: str) -> Step | None:
    stage = stage_def(stage_key)
    if stage is None:
        return None
    return next((s for s in stage.steps if s.slug == step_slug), None)


def next_step(stage_key: str, step_slug: str) -> tuple[StageDef, Step] | None:
    """The next available step after this one, across stages."""
    flat = [(stage, step) for stage in STAGES for step in stage.steps if step.available]
    for i, (stage, step) in enumerate(flat):
        if stage.key == stage_key and step.slug == step_slug and i + 1 < len(flat):
            return flat[i + 1]
    return None
