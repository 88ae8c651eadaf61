"""Project reads: access checks, stages and their saved answers, the activity feed."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404

from lifecycle_app.projects.models import Activity, Membership, Project, Stage

AnyUser = User | AnonymousUser


def project_get_for_user(
    *, user: AnyUser, slug: str, write: bool = False, manage: bool = False
) -> tuple[Project, Membership]:
    """The project and the user's membership; 404 for anyone outside the project.

    `write`: editors and owners (run jobs, edit stages, upload data). `manage`: owners only
    (members, share links, deleting the project). A member below the role asked for gets
    403: they can see the project exists.
    """
    if not isinstance(user, User):
        raise Http404("No such project.")
    membership = (
        Membership.objects.select_related("project", "project__owner")
        .filter(project__slug=slug, user=user)
        .first()
    )
    if membership is None:
        raise Http404("No such project.")
    if manage and not membership.can_manage:
        raise PermissionDenied("Only the project's owners can do this.")
    if write and not membership.can_write:
        raise PermissionDenied("Viewers cannot change this project.")
    return membership.project, membership


def activity_list(*, project: Project, limit: int = 20) -> list[Activity]:
    return list(Activity.objects.filter(project=project).select_related("actor")[:limit])


def project_list_for_user(*, user: User) -> QuerySet[Project]:
    return Project.objects.filter(memberships__user=user).select_related("owner")


def stages_for_project(*, project: Project) -> dict[str, Stage]:
    return {stage.key: stage for stage in project.stages.all()}


MAX_ID = 2**63 - 1  # larger ids in a URL would overflow the database's bigint


def step_answers(stages: dict[str, Stage], stage_key: str, step_slug: str) -> dict[str, Any]:
    """The validated answers of one wizard step ({} when it has none yet)."""
    stage = stages.get(stage_key)
    return dict(stage.step(step_slug).get("answers", {})) if stage else {}
