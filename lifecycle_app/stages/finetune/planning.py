"""The fine-tuning step's plan: trainable parameters, memory and the fits verdict."""

from __future__ import annotations

from typing import Any

from django.http import QueryDict

from lifecycle_app.stages.finetune.forms import FineTuneForm


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
