"""Team reads: members and share links of a project."""

from __future__ import annotations

import re

from django.db.models import Q
from django.http import Http404
from django.utils import timezone

from lifecycle_app.projects.models import Membership, Project, Role
from lifecycle_app.projects.selectors import MAX_ID
from lifecycle_app.teams.models import ShareLink

# secrets.token_urlsafe(32) gives 43 characters; anything unlike a token is refused unread.
_SHARE_TOKEN = re.compile(r"[A-Za-z0-9_-]{20,64}")


def share_links_active_q() -> Q:
    """The links that still open their project (not revoked, not expired)."""
    return Q(revoked_at__isnull=True) & (
        Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now())
    )


def share_link_get_active(*, token: str) -> ShareLink:
    """The share link with this token and its project; 404 when unknown, revoked or expired.

    The access helper of every /s/ page: a share link opens that one project's read-only
    pages and nothing else.
    """
    if not _SHARE_TOKEN.fullmatch(token):
        raise Http404("No such page.")
    link = (
        ShareLink.objects.select_related("project", "created_by")
        .filter(share_links_active_q(), token=token)
        .first()
    )
    if link is None:
        raise Http404("No such page.")
    return link


def share_link_list(*, project: Project, limit: int = 20) -> list[ShareLink]:
    """The latest links, those that still open the project first."""
    links = list(ShareLink.objects.filter(project=project).select_related("created_by")[:limit])
    return sorted(links, key=lambda link: not link.is_active)  # stable: newest first within


def share_link_get(*, project: Project, share_id: int) -> ShareLink:
    if not 0 < share_id <= MAX_ID:
        raise Http404("No such share link.")
    link = ShareLink.objects.filter(project=project, id=share_id).first()
    if link is None:
        raise Http404("No such share link.")
    return link


def membership_list(*, project: Project) -> list[Membership]:
    """Owners first, then editors, then viewers; by name within a role."""
    order = {Role.OWNER: 0, Role.EDITOR: 1, Role.VIEWER: 2}
    members = list(Membership.objects.filter(project=project).select_related("user"))
    return sorted(members, key=lambda m: (order.get(Role(m.role), 3), m.user.username.lower()))


def membership_get(*, project: Project, member_id: int) -> Membership:
    if not 0 < member_id <= MAX_ID:
        raise Http404("No such member.")
    membership = (
        Membership.objects.select_related("user").filter(project=project, id=member_id).first()
    )
    if membership is None:
        raise Http404("No such member.")
    return membership
