"""The wizard's shared context: the stage and step tree (sidebar) and the project page."""

from __future__ import annotations

from typing import Any

from lifecycle_app.projects import selectors as projects_selectors
from lifecycle_app.projects import steps
from lifecycle_app.projects.models import Membership, Project, Stage, StageKey, StepStatus
from lifecycle_app.stages.deploy.serving import deployed_variant
from lifecycle_app.stages.evaluate import selectors as evaluate_selectors
from lifecycle_app.stages.integrate.items import checklist_view
from lifecycle_app.stages.prompt import selectors as prompt_selectors
from workers.ml.scoring.metrics import LABELS as METRIC_LABELS


def wizard_context(
    *,
    project: Project,
    membership: Membership | None,
    current: tuple[str, str] | None = None,
    stages: dict[str, Stage] | None = None,
) -> dict[str, Any]:
    """The stage/step tree with each step's status, for the sidebar and overview."""
    if stages is None:
        stages = projects_selectors.stages_for_project(project=project)
    rows = []
    for stage_def in steps.STAGES:
        stage = stages.get(stage_def.key)
        step_rows = []
        for step in stage_def.steps:
            state = stage.step(step.slug) if stage else {}
            status = state.get("status", StepStatus.NOT_STARTED.value)
            step_rows.append(
                {
                    "slug": step.slug,
                    "title": step.title,
                    "summary": step.summary,
                    "available": step.available,
                    "status": status if step.available else "planned",
                    "current": current == (stage_def.key.value, step.slug),
                }
            )
        done = sum(1 for s in step_rows if s["status"] == "complete")
        available = sum(1 for s in step_rows if s["available"])
        rows.append(
            {
                "key": stage_def.key.value,
                "title": stage_def.title,
                "summary": stage_def.summary,
                "steps": step_rows,
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
    context["stages_defs"] = steps.STAGES
    stages = projects_selectors.stages_for_project(project=project)
    checklist = projects_selectors.step_answers(stages, StageKey.INTEGRATE, steps.StepSlug.APP)
    context["checklist"] = checklist_view(checklist)
    context["checklist_saved"] = bool(checklist)
    context["deployed"] = deployed_variant(project=project)
    best_id = prompt_selectors.best_trial_id(stages)
    best = prompt_selectors.trials_by_ids(project=project, ids=[best_id]) if best_id else []
    context["best_trial"] = best[0] if best else None
    if best:
        context["best_metrics"] = [
            (METRIC_LABELS.get(k, k), v) for k, v in (best[0].result.get("scores") or {}).items()
        ]
    context["evaluated"] = evaluate_selectors.evaluation_list(project=project, limit=1) != []
    scope = projects_selectors.step_answers(stages, StageKey.SCOPE, steps.StepSlug.USE_CASE)
    summary = (
        evaluate_selectors.evaluation_leader(project=project, scope=scope)
        if context["evaluated"]
        else None
    )
    if summary is not None:
        context["eval_job"], context["card"], context["leader"] = summary
    if membership is not None:
        context["activities"] = projects_selectors.activity_list(project=project)
    return context
