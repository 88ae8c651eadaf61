"""Projects and their stages: create, delete, save a wizard step."""

from __future__ import annotations

import logging
import secrets
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from lifecycle_app.projects import steps
from lifecycle_app.projects.activity import activity_record
from lifecycle_app.projects.models import (
    ActivityVerb,
    Membership,
    Project,
    Role,
    Stage,
    StageKey,
    StepStatus,
)

logger = logging.getLogger(__name__)


class ProjectActionRefused(ValueError):
    """A change the rules forbid; the message says why, for the person who asked."""


def _unique_slug(name: str) -> str:
    base = slugify(name)[:60] or "project"
    slug = base
    while Project.objects.filter(slug=slug).exists():
        slug = f"{base}-{secrets.token_hex(3)}"
    return slug


@transaction.atomic
def project_create(*, owner: User, name: str, description: str = "") -> Project:
    """Create a project with its owner membership and one Stage row per lifecycle stage."""
    project = Project.objects.create(
        slug=_unique_slug(name), name=name.strip(), description=description, owner=owner
    )
    Membership.objects.create(project=project, user=owner, role=Role.OWNER)
    Stage.objects.bulk_create(Stage(project=project, key=key) for key in StageKey.values)
    activity_record(
        project=project,
        actor=owner,
        verb=ActivityVerb.PROJECT_CREATED,
        description="created the project",
    )
    return project


@transaction.atomic
def stage_step_save(
    *,
    project: Project,
    stage_key: str,
    step_slug: str,
    answers: dict[str, Any],
    actor: User | None = None,
) -> Stage:
    """Store a step's validated answers (merged into earlier ones) and recompute its status.

    `actor` is the person who saved the step's form; it goes into the activity feed. The
    bookkeeping writes of jobs (last run, succeeded run) pass none and are not recorded:
    the job's own activity lines say it.
    """
    step = steps.step_def(stage_key, step_slug)
    if step is None:
        raise ValueError(f"Unknown step {stage_key}/{step_slug}")
    stage, _ = Stage.objects.select_for_update().get_or_create(project=project, key=stage_key)
    merged = {**stage.step(step_slug).get("answers", {}), **answers}
    status = StepStatus.COMPLETE if step.is_complete(merged) else StepStatus.IN_PROGRESS
    stage.steps = {
        **stage.steps,
        step_slug: {
            "status": status.value,
            "answers": merged,
            "updated_at": timezone.now().isoformat(),
        },
    }
    stage.save(update_fields=["steps", "updated_at"])
    Project.objects.filter(id=project.id).update(updated_at=timezone.now())
    if actor is not None:
        stage_title = steps.stage_def(stage_key)
        activity_record(
            project=project,
            actor=actor,
            verb=ActivityVerb.STEP_SAVED,
            description=f"saved {stage_title.title if stage_title else stage_key} › {step.title}",
        )
    return stage
