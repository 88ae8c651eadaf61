from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails

from lifecycle_app import selectors, wizard
from lifecycle_app.models import Membership, Project, Stage, StepStatus
from workers.ml.evaluation.metrics import LABELS as METRIC_LABELS


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def authed_user(request: HttpRequest) -> User:
    user = request.user
    assert isinstance(user, User), "login_required runs first"
    return user


def wizard_context(
    *,
    project: Project,
    membership: Membership | None,
    current: tuple[str, str] | None = None,
    stages: dict[str, Stage] | None = None,
) -> dict[str, Any]:
    """The stage/step tree with each step's status, for the sidebar and overview."""
    if stages is None:
        stages = selectors.stages_for_project(project=project)
    rows = []
    for stage_def in wizard.STAGES:
        stage = stages.get(stage_def.key)
        steps = []
        for step in stage_def.steps:
            state = stage.step(step.slug) if stage else {}
            status = state.get("status", StepStatus.NOT_STARTED.value)
            steps.append(
                {
                    "slug": step.slug,
                    "title": step.title,
                    "summary": step.summary,
                    "available": step.available,
                    "status": status if step.available else "planned",
                    "current": current == (stage_def.key.value, step.slug),
                }
            )
        done = sum(1 for s in steps if s["status"] == "complete")
        available = sum(1 for s in steps if s["available"])
        rows.append(
            {
                "key": stage_def.key.value,
                "title": stage_def.title,
                "summary": stage_def.summary,
                "steps": steps,
                "done": done,
                "available": available,
            }
        )
    return {"project": project, "membership": membership, "stage_rows": rows}


def overview_context(*, project: Project, membership: Membership | None) -> dict[str, Any]:
    """The project page: stages with their steps' status and the next step to do.

    The activity feed is for members only (`membership` given): a share link shows the
    work, not who on the team did what.
    """
    context = wizard_context(project=project, membership=membership)
    context["next_step"] = next(
        (
            (stage, step)
            for stage in context["stage_rows"]
            for step in stage["steps"]
            if step["available"] and step["status"] != "complete"
        ),
        None,
    )
    context["stages_defs"] = wizard.STAGES
    stages = selectors.stages_for_project(project=project)
    from lifecycle_app.deploy_forms import checklist_view
    from lifecycle_app.serving import deployed_variant

    context["checklist"] = checklist_view(selectors.step_answers(stages, "integrate", "augment"))
    context["checklist_saved"] = bool(selectors.step_answers(stages, "integrate", "augment"))
    context["deployed"] = deployed_variant(project=project)
    best_id = selectors.best_trial_id(stages)
    best = selectors.trials_by_ids(project=project, ids=[best_id]) if best_id else []
    context["best_trial"] = best[0] if best else None
    if best:
        context["best_metrics"] = [
            (METRIC_LABELS.get(k, k), v) for k, v in (best[0].result.get("scores") or {}).items()
        ]
    context["evaluated"] = selectors.evaluation_list(project=project, limit=1) != []
    if membership is not None:
        context["activities"] = selectors.activity_list(project=project)
    return context
