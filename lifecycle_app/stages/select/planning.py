"""Turns a planner form into the numbers the page shows (workers.ml.planner does the math)."""

from __future__ import annotations

from typing import Any

from lifecycle_app.catalog.models import CatalogModel
from lifecycle_app.stages.select.forms import PlannerForm
from workers.ml.planner import (
    memory as planner_memory,
)
from workers.ml.planner import (
    pretraining as planner_pretraining,
)
from workers.ml.planner import (
    shape as planner_shape,
)

GB = 1024**3


def plan_context(form: PlannerForm) -> dict[str, Any]:
    """The memory plan, verdict and pretraining plan for a planner form, if it is valid.

    An unbound form is planned from its initial values, so the page shows numbers at once.
    """
    if not form.is_bound:
        data = {**{k: f.initial for k, f in form.fields.items()}, **form.initial}
        if isinstance(data.get("base_model"), CatalogModel):
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
    model: CatalogModel = cleaned["base_model"]
    shape = planner_shape.ModelShape.from_json(model.shape)
    try:
        plan = planner_memory.memory_plan(
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
    fits, advice = planner_memory.verdict(plan, available)
    pretrain = planner_pretraining.pretraining_plan(
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
