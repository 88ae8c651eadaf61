"""The project list and the project page (the lifecycle at a glance)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from lifecycle_app.common.http import HtmxHttpRequest, authed_user
from lifecycle_app.projects import selectors
from lifecycle_app.projects.forms import ProjectForm
from lifecycle_app.projects.services import project_create
from lifecycle_app.wizard.context import overview_context


@login_required
@require_http_methods(["GET", "POST"])
def project_list(request: HtmxHttpRequest) -> HttpResponse:
    form = ProjectForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        project = project_create(
            owner=authed_user(request),
            name=form.cleaned_data["name"],
            description=form.cleaned_data["description"],
        )
        return redirect("project_detail", slug=project.slug)
    projects = selectors.project_list_for_user(user=authed_user(request))
    return render(request, "projects/list.html", {"projects": projects, "form": form})


@login_required
@require_GET
def project_detail(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    project, membership = selectors.project_get_for_user(user=request.user, slug=slug)
    context = overview_context(project=project, membership=membership)
    template = "projects/detail.html"
    if request.htmx and not request.htmx.history_restore_request:
        template += "#overview"
    return render(request, template, context)
