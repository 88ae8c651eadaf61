"""Select reads: the model the project picked."""

from __future__ import annotations

from typing import Any

from lifecycle_app.projects.models import Stage
from lifecycle_app.projects.selectors import step_answers
from lifecycle_app.projects.steps import StepSlug


def picked_model_slug(stages: dict[str, Stage]) -> str | None:
    """The model the project chose in Select, if it chose one."""
    return step_answers(stages, "select", StepSlug.MODEL).get("base_model")


# The compute plan's answers and the fine-tuning form fields they become.
PLAN_TO_FINETUNE = {
    "lora_r": "lora_r",
    "lora_targets": "target_modules",
    "num_virtual_tokens": "num_virtual_tokens",
    "batch_size": "batch_size",
    "seq_len": "max_seq_len",
}
TRAINING_METHODS = ("lora", "full", "prompt_tuning")


def saved_plan(stages: dict[str, Stage]) -> dict[str, Any]:
    """The compute plan saved in Select, as fine-tuning settings (empty when none was saved).

    The planner's model, method, LoRA rank and targets, batch size and sequence length are
    the decisions a fine-tuning run starts from; "inference only" plans no training method.
    """
    answers = step_answers(stages, "select", StepSlug.PLAN)
    if not answers:
        return {}
    plan: dict[str, Any] = {
        field: answers[key] for key, field in PLAN_TO_FINETUNE.items() if answers.get(key)
    }
    if answers.get("method") in TRAINING_METHODS:
        plan["method"] = answers["method"]
    if answers.get("base_model"):
        plan["base_model"] = answers["base_model"]
    return plan
