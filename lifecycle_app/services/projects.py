"""Projects and their stages: create, delete, save a wizard step."""

from __future__ import annotations

import logging
import secrets
import shutil
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from lifecycle_app import wizard
from lifecycle_app.models import (
    ACTIVE_STATUSES,
    ActivityVerb,
    Job,
    Membership,
    Project,
    Role,
    Stage,
    StageKey,
    StepStatus,
)
from lifecycle_app.services.activity import activity_record

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


def project_delete(*, project: Project, actor: User) -> None:
    """Delete a project with everything in it: stages, datasets (and their files), jobs.

    Refused while a job is queued or running: its worker would go on writing to rows that
    no longer exist. The caller has checked that `actor` is an owner.
    """
    active = Job.objects.filter(project=project, status__in=ACTIVE_STATUSES).count()
    if active:
        raise ProjectActionRefused(
            f"{active} job{'s are' if active > 1 else ' is'} still queued or running. "
            "Cancel or wait for them on the Jobs page, then delete the project."
        )
    folder = Path(settings.DATASETS_DIR) / str(project.id)
    with transaction.atomic():
        logger.info("Project %s deleted by %s", project.slug, actor.username)
        _delete_candidates(project)
        project.delete()
        transaction.on_commit(lambda: shutil.rmtree(folder, ignore_errors=True))


def _delete_candidates(project: Project) -> None:
    """The project's own models go first, in an order PROTECT allows: variants and jobs
    (which point at candidates), then candidates children before parents (an exported
    variant's candidate has the fine-tuned candidate as parent)."""
    from lifecycle_app.models import BaseModel, ModelVariant

    ModelVariant.objects.filter(project=project).delete()
    Job.objects.filter(project=project).delete()
    while True:
        leaves = BaseModel.objects.filter(project=project).exclude(children__isnull=False)
        if not leaves.exists():
            break
        leaves.delete()


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
    if actor is not None:
        stage_title = wizard.stage_def(stage_key)
        activity_record(
            project=project,
            actor=actor,
            verb=ActivityVerb.STEP_SAVED,
            description=f"saved {stage_title.title if stage_title else stage_key} › {step.title}",
        )
    return stage
