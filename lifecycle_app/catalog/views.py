"""Adding a model to the catalog."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from lifecycle_app.catalog.forms import AddModelForm
from lifecycle_app.catalog.services import catalog_model_register
from lifecycle_app.common.http import HtmxHttpRequest, authed_user
from lifecycle_app.jobs.services import JobLimitReached
from lifecycle_app.projects import selectors


@login_required
@require_http_methods(["GET", "POST"])
def model_add(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    """Check a model folder or cached hub id here, then read it on a worker to add it."""
    project, membership = selectors.project_get_for_user(
        user=request.user, slug=slug, write=request.method == "POST"
    )
    form = AddModelForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            catalog_model_register(
                project=project,
                user=authed_user(request),
                source=data["source"],
                location=data["location"],
                name=data["name"] or data["location"].rstrip("/").rsplit("/", 1)[-1],
            )
        except JobLimitReached as exc:
            form.add_error(None, str(exc))
        else:
            return redirect("wizard_step", slug=project.slug, stage="select", step="model")
    context = {"project": project, "membership": membership, "form": form}
    return render(request, "catalog/add.html", context)
