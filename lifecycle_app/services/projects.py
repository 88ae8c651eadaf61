from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from lifecycle_app import wizard
from lifecycle_app.models import Membership, Project, Role, Stage, StageKey, StepStatus


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
    return project


@transaction.atomic
def stage_step_save(
    *, project: Project, stage_key: str, step_slug: str, answers: dict[str, Any]
) -> Stage:
    """Store a step's validated answers (merged into earlier ones) and recompute its status."""
    step = wizard.step_def(stage_key, step_slug)
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
    return stage
