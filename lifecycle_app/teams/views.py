"""The members and sharing page: who is in the project, invitations, roles, share links.

Every member can see the member list; changing it, share links and deleting the project
are for owners (403 for editors and viewers, 404 for everyone outside the project).
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from lifecycle_app.common.http import HtmxHttpRequest, authed_user
from lifecycle_app.projects import selectors as projects_selectors
from lifecycle_app.projects.models import Membership, Project, Role
from lifecycle_app.projects.services import ProjectActionRefused
from lifecycle_app.teams import selectors
from lifecycle_app.teams import services as sharing_services
from lifecycle_app.teams.forms import InviteForm, RoleForm, ShareLinkForm


def _members_url(project: Project, anchor: str = "") -> str:
    return reverse("members", args=[project.slug]) + (f"#{anchor}" if anchor else "")


def _page(
    request: HtmxHttpRequest,
    project: Project,
    membership: Membership,
    *,
    invite_form: InviteForm | None = None,
    share_form: ShareLinkForm | None = None,
) -> HttpResponse:
    members = selectors.membership_list(project=project)
    context: dict[str, Any] = {
        "project": project,
        "membership": membership,
        "members": members,
        "roles": Role.choices,
        "owner_names": [m.user.username for m in members if m.role == Role.OWNER],
        "invite_form": invite_form or InviteForm(),
    }
    if membership.can_manage:
        context["share_form"] = share_form or ShareLinkForm()
        context["share_links"] = selectors.share_link_list(project=project)
    return render(request, "teams/members.html", context)


@login_required
@require_GET
def members(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    project, membership = projects_selectors.project_get_for_user(user=request.user, slug=slug)
    return _page(request, project, membership)


@login_required
@require_POST
def member_invite(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    project, membership = projects_selectors.project_get_for_user(
        user=request.user, slug=slug, manage=True
    )
    form = InviteForm(request.POST)
    if form.is_valid():
        try:
            added = sharing_services.membership_invite(
                project=project,
                actor=authed_user(request),
                identifier=form.cleaned_data["identifier"],
                role=Role(form.cleaned_data["role"]),
            )
        except ProjectActionRefused as exc:
            form.add_error("identifier", str(exc))
        else:
            messages.success(
                request,
                f"{added.user.username} is now {added.get_role_display().lower()} of "
                f"{project.name}; the project is in their list.",
            )
            return redirect(_members_url(project))
    return _page(request, project, membership, invite_form=form)


@login_required
@require_POST
def member_role(request: HtmxHttpRequest, slug: str, member_id: int) -> HttpResponse:
    project, _ = projects_selectors.project_get_for_user(user=request.user, slug=slug, manage=True)
    target = selectors.membership_get(project=project, member_id=member_id)
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose owner, editor or viewer.")
        return redirect(_members_url(project))
    try:
        changed = sharing_services.membership_change_role(
            project=project,
            actor=authed_user(request),
            membership=target,
            role=Role(form.cleaned_data["role"]),
        )
    except ProjectActionRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request, f"{changed.user.username} is now {changed.get_role_display().lower()}."
        )
    return redirect(_members_url(project))


@login_required
@require_POST
def member_remove(request: HtmxHttpRequest, slug: str, member_id: int) -> HttpResponse:
    project, _ = projects_selectors.project_get_for_user(user=request.user, slug=slug, manage=True)
    target = selectors.membership_get(project=project, member_id=member_id)
    user = authed_user(request)
    try:
        sharing_services.membership_remove(project=project, actor=user, membership=target)
    except ProjectActionRefused as exc:
        messages.error(request, str(exc))
        return redirect(_members_url(project))
    if target.user_id == user.id:
        messages.success(request, f"You left {project.name}.")
        return redirect("project_list")
    messages.success(request, f"{target.user.username} no longer has access to {project.name}.")
    return redirect(_members_url(project))


@login_required
@require_POST
def member_leave(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    project, membership = projects_selectors.project_get_for_user(user=request.user, slug=slug)
    try:
        sharing_services.membership_remove(
            project=project, actor=authed_user(request), membership=membership
        )
    except ProjectActionRefused as exc:
        messages.error(request, str(exc))
        return redirect(_members_url(project))
    messages.success(request, f"You left {project.name}.")
    return redirect("project_list")


@login_required
@require_POST
def share_create(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    project, membership = projects_selectors.project_get_for_user(
        user=request.user, slug=slug, manage=True
    )
    form = ShareLinkForm(request.POST)
    if not form.is_valid():
        return _page(request, project, membership, share_form=form)
    sharing_services.share_link_create(
        project=project,
        actor=authed_user(request),
        lifetime=sharing_services.SHARE_LIFETIMES[form.cleaned_data["lifetime"]],
        label=form.cleaned_data["label"],
    )
    messages.success(request, "Share link created. Copy it from the list below.")
    return redirect(_members_url(project, "share-links"))


@login_required
@require_POST
def share_revoke(request: HtmxHttpRequest, slug: str, share_id: int) -> HttpResponse:
    project, _ = projects_selectors.project_get_for_user(user=request.user, slug=slug, manage=True)
    link = selectors.share_link_get(project=project, share_id=share_id)
    sharing_services.share_link_revoke(link=link, actor=authed_user(request))
    messages.success(request, "Share link revoked: it no longer opens the project.")
    return redirect(_members_url(project, "share-links"))
