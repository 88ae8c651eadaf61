"""Deleting a project with everything every stage made in it."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.db import transaction
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from lifecycle_app.catalog.models import CatalogModel
from lifecycle_app.common.http import HtmxHttpRequest, authed_user
from lifecycle_app.jobs.models import ACTIVE_STATUSES, Job
from lifecycle_app.projects import selectors as projects_selectors
from lifecycle_app.projects.models import (
    Project,
)
from lifecycle_app.projects.services import ProjectActionRefused
from lifecycle_app.stages.deploy.models import ModelVariant
from lifecycle_app.storage import StoreError, is_remote, store
from lifecycle_app.teams.forms import ProjectDeleteForm

logger = logging.getLogger(__name__)


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
    project_id = project.id
    job_ids = list(Job.objects.filter(project=project).values_list("id", flat=True))
    with transaction.atomic():
        logger.info("Project %s deleted by %s", project.slug, actor.username)
        _delete_candidates(project)
        project.delete()
        transaction.on_commit(lambda: shutil.rmtree(folder, ignore_errors=True))
        if is_remote():
            transaction.on_commit(lambda: _delete_stored(project_id, job_ids))


def _delete_stored(project_id: int, job_ids: list[int]) -> None:
    """The project's files in the artifact store: its datasets and its jobs' folders."""
    target = store()
    try:
        for prefix in [f"datasets/{project_id}", *(f"jobs/{i}" for i in job_ids)]:
            for key in target.list(prefix):
                target.delete(key)
    except StoreError:
        logger.exception("Project %s: some of its files stay in the artifact store", project_id)


def _delete_candidates(project: Project) -> None:
    """The project's own models go first, in an order PROTECT allows: variants and jobs
    (which point at candidates), then candidates children before parents (an exported
    variant's candidate has the fine-tuned candidate as parent)."""

    ModelVariant.objects.filter(project=project).delete()
    Job.objects.filter(project=project).delete()
    while True:
        leaves = CatalogModel.objects.filter(project=project).exclude(children__isnull=False)
        if not leaves.exists():
            break
        leaves.delete()


@login_required
@require_http_methods(["GET", "POST"])
def project_delete_view(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    project, membership = projects_selectors.project_get_for_user(
        user=request.user, slug=slug, manage=True
    )
    form = ProjectDeleteForm(request.POST or None, project_name=project.name)
    if request.method == "POST" and form.is_valid():
        try:
            project_delete(project=project, actor=authed_user(request))
        except ProjectActionRefused as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"{project.name} was deleted.")
            return redirect("project_list")
    context = {"project": project, "membership": membership, "form": form}
    return render(request, "projects/delete.html", context)
