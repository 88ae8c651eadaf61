"""The lifecycle, declared: stages, their steps and when each step counts as done.

Pure data that every layer may read (the services that save a step, the wizard, the project
page). A step names its handler, the web side of the step (form, template, initial values,
extra context, the job it starts), by dotted path; the wizard resolves it lazily
(lifecycle_app/wizard/handlers.py), so this module imports no forms and no stage code beyond
the two leaf rule modules below. Adding a step is one `Step` entry here plus its handler.
A step without a handler is shown as planned.

Code reads `steps.STAGES` (the module attribute) or `stage_def()`, `step_def()` and
`next_step()`, which look it up at call time, so a test can declare a step of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lifecycle_app.projects.models import StageKey
from lifecycle_app.stages.integrate.items import checklist_complete
from lifecycle_app.stages.scope.rules import use_case_complete


class StepSlug:
    """Every step's slug (in URLs and in Stage.steps), named once."""

    USE_CASE = "use-case"
    MODEL = "model"
    PLAN = "plan"
    PROMPT = "prompt"
    FINETUNE = "fine-tune"
    ALIGN = "align"
    EVALUATE = "evaluate"
    DEPLOY = "deploy"
    APP = "app"


# Slugs that were renamed (old URL -> new slug): old links and bookmarks redirect.
RENAMED_SLUGS = {("integrate", "optimize"): StepSlug.DEPLOY, ("integrate", "augment"): StepSlug.APP}


def has(*keys: str) -> Callable[[dict[str, Any]], bool]:
    """A completion rule: every key answered (not missing, empty or an empty list)."""
    return lambda answers: all(answers.get(k) not in (None, "", []) for k in keys)


@dataclass(frozen=True)
class Step:
    slug: str
    title: str
    summary: str
    # Dotted path of the step's handler class (a wizard.handlers.StepHandler); "" = planned.
    handler: str = ""
    is_complete: Callable[[dict[str, Any]], bool] = field(default=lambda answers: False)

    @property
    def available(self) -> bool:
        return bool(self.handler)


@dataclass(frozen=True)
class StageDef:
    key: StageKey
    title: str
    summary: str
    steps: tuple[Step, ...]


_H = "lifecycle_app.stages.{}.step.{}"

STAGES: tuple[StageDef, ...] = (
    StageDef(
        StageKey.SCOPE,
        "Scope",
        "Define the use case as narrowly as possible.",
        (
            Step(
                StepSlug.USE_CASE,
                "Define the use case",
                "Task type, examples, success metric and constraints.",
                _H.format("scope", "UseCaseStep"),
                use_case_complete,
            ),
        ),
    ),
    StageDef(
        StageKey.SELECT,
        "Select",
        "Choose an existing model, or see why pretraining your own is rarely warranted.",
        (
            Step(
                StepSlug.MODEL,
                "Choose a model",
                "Pick a base model from the catalog.",
                _H.format("select", "ModelStep"),
                has("base_model"),
            ),
            Step(
                StepSlug.PLAN,
                "Plan compute and memory",
                "Memory to run and to train, trainable parameters, pretraining compute.",
                _H.format("select", "PlanStep"),
                has("method", "base_model"),
            ),
        ),
    ),
    StageDef(
        StageKey.ADAPT,
        "Adapt and align",
        "Prompt first; then fine-tune, align with human feedback, and evaluate.",
        (
            Step(
                StepSlug.PROMPT,
                "Prompt engineering",
                "Zero-, one- and few-shot prompt trials, scored on the evaluation split.",
                _H.format("prompt", "PromptStep"),
                has("succeeded_trial"),
            ),
            Step(
                StepSlug.FINETUNE,
                "Fine-tuning",
                "Full, LoRA and prompt tuning on your dataset, with live curves.",
                _H.format("finetune", "FinetuneStep"),
                has("succeeded_run"),
            ),
            Step(
                StepSlug.ALIGN,
                "Align with human feedback",
                "Teammates rate pairs of answers; DPO trains on their preferences.",
                _H.format("align", "AlignStep"),
                has("succeeded_run"),
            ),
            Step(
                StepSlug.EVALUATE,
                "Evaluate",
                "Score every candidate on the same rows: one scorecard, changes against a "
                "baseline, and a forgetting check.",
                _H.format("evaluate", "EvaluateStep"),
                has("succeeded_evaluation"),
            ),
        ),
    ),
    StageDef(
        StageKey.INTEGRATE,
        "Application integration",
        "Optimize and deploy the model; build the application around it.",
        (
            Step(
                StepSlug.DEPLOY,
                "Optimize and deploy",
                "Merge, quantize, export; measure size, speed and quality; serve.",
                _H.format("deploy", "DeployStep"),
                has("deployed_variant"),
            ),
            Step(
                StepSlug.APP,
                "Integration checklist",
                "Retrieval, reasoning aids, monitoring, human fallback, infrastructure.",
                _H.format("integrate", "ChecklistStep"),
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


def stage_of(step: Step) -> StageDef:
    return next(s for s in STAGES if step in s.steps)


def next_step(stage_key: str, step_slug: str) -> tuple[StageDef, Step] | None:
    """The next available step after this one, across stages."""
    flat = [(stage, step) for stage in STAGES for step in stage.steps if step.available]
    for i, (stage, step) in enumerate(flat):
        if stage.key == stage_key and step.slug == step_slug and i + 1 < len(flat):
            return flat[i + 1]
    return None
