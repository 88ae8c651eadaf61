"""Turns a planner form into the numbers the page shows (workers.ml.planner does the math)."""

from __future__ import annotations

from typing import Any

from django.http import QueryDict

from lifecycle_app.finetune_forms import FineTuneForm
from lifecycle_app.forms import PlannerForm
from lifecycle_app.models import BaseModel
from workers.ml.planner.memory import memory_plan, verdict
from workers.ml.planner.pretraining import pretraining_plan
from workers.ml.planner.shape import ModelShape

GB = 1024**3


def plan_context(form: PlannerForm) -> dict[str, Any]:
    """The memory plan, verdict and pretraining plan for a planner form, if it is valid.

    An unbound form is planned from its initial values, so the page shows numbers at once.
    """
    if not form.is_bound:
        data = {**{k: f.initial for k, f in form.fields.items()}, **form.initial}
        if isinstance(data.get("base_model"), BaseModel):
            data["base_model"] = data["base_model"].slug
        data = {k: v for k, v in data.items() if v is not None and v is not False}
        probe = PlannerForm(data, project=form.project)
        if not probe.is_valid():
            first = next(iter(probe.errors.values()), [""])
            return {"plan_error": first[0]}
        cleaned = probe.cleaned_data
    elif form.is_valid():
        cleaned = form.cleaned_data
    else:
        return {}
    model: BaseModel = cleaned["base_model"]
    shape = ModelShape.from_json(model.shape)
    try:
        plan = memory_plan(
            shape,
            dtype=cleaned["dtype"],
            method=cleaned["method"],
            batch_size=cleaned["batch_size"],
            seq_len=cleaned["seq_len"],
            lora_r=cleaned["lora_r"],
            lora_targets=tuple(cleaned["lora_targets"] or ("q_proj",)),
            num_virtual_tokens=cleaned["num_virtual_tokens"],
            optimizer=cleaned["optimizer"],
            gradient_checkpointing=cleaned["gradient_checkpointing"],
        )
    except ValueError as exc:
        return {"plan_error": str(exc)}
    available = int(cleaned["memory_gb"] * GB)
    fits, advice = verdict(plan, available)
    pretrain = pretraining_plan(
        shape.n_params,
        accelerator=cleaned["accelerator"],
        efficiency=cleaned["efficiency"],
        n_devices=cleaned["n_devices"],
    )
    return {
        "plan": plan,
        "plan_rows": [(name, size / GB, why) for name, size, why in plan.rows()],
        "plan_total_gb": plan.total / GB,
        "available_gb": cleaned["memory_gb"],
        "available_display": f"{cleaned['memory_gb']:g}",
        "fits": fits,
        "advice": advice,
        "pretrain": pretrain,
        "planned_model": model,
        "trainable_share": plan.trainable_params / shape.n_params if shape.n_params else 0,
    }


def finetune_plan(form: FineTuneForm) -> dict[str, Any]:
    """The fine-tuning plan for the form's values (its initial values when unbound)."""
    if not form.is_bound:
        data = QueryDict(mutable=True)
        values = {**{k: f.initial for k, f in form.fields.items()}, **form.initial}
        for key, value in values.items():
            if value is None:
                continue
            if isinstance(value, list | tuple):
                data.setlist(key, [str(v) for v in value])
            else:
                data[key] = str(getattr(value, "pk", value))
        form = FineTuneForm(data, project=form.project)
    form.is_valid()
    if not form.plan:
        return {
            "ft_plan_errors": [
                f"{form.fields[name].label or name.capitalize()}: {error}"
                if name in form.fields
                else error
                for name, errors in form.errors.items()
                for error in errors
            ]
        }
    return {"ft_plan": form.plan}
