"""Members and share links.

Design note. Access is decided per request from Membership rows (see
`selectors.project_get_for_user`), so every change here takes effect on the member's
next request: a removed member's next page or poll is a 404.
- A project always keeps at least one owner. Changes that could remove the last one
  lock the project's owner memberships first, so two owners demoting each other at the
  same moment cannot both succeed.
- `Project.owner` is the project's primary owner, shown in lists; when that person stops
  being an owner, the longest-standing remaining owner takes the field over.
- An invitation adds an existing account straight away (no acceptance step): the person
  sees the project in their list on their next page load.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from lifecycle_app.projects.activity import activity_record
from lifecycle_app.projects.models import ActivityVerb, Membership, Project, Role
from lifecycle_app.projects.services import ProjectActionRefused
from lifecycle_app.teams.models import ShareLink

LAST_OWNER = (
    "A project needs at least one owner. Make someone else an owner first, or delete the project."
)


def _user_for_invite(identifier: str) -> User:
    identifier = identifier.strip()
    if not identifier:
        raise ProjectActionRefused("Enter a username or an email address.")
    if "@" in identifier:
        matches = list(User.objects.filter(email__iexact=identifier, is_active=True)[:2])
        if len(matches) > 1:
            raise ProjectActionRefused(
                f"Several accounts use {identifier}: invite the person by username instead."
            )
    else:
        matches = list(User.objects.filter(username__iexact=identifier, is_active=True)[:1])
    if not matches:
        raise ProjectActionRefused(
            f"No account matches “{identifier}”. Ask them to sign up first, then invite them."
        )
    return matches[0]


def membership_invite(*, project: Project, actor: User, identifier: str, role: Role) -> Membership:
    """Add an existing user (by username or email) to the project with `role`."""
    user = _user_for_invite(identifier)
    if Membership.objects.filter(project=project, user=user).exists():
        raise ProjectActionRefused(f"{user.username} is already a member of this project.")
    try:
        with transaction.atomic():
            membership = Membership.objects.create(project=project, user=user, role=role)
            activity_record(
                project=project,
                actor=actor,
                verb=ActivityVerb.MEMBER_ADDED,
                description=f"added {user.username} as {Role(role).label.lower()}",
            )
    except IntegrityError:  # invited twice at the same moment
        raise ProjectActionRefused(
            f"{user.username} is already a member of this project."
        ) from None
    return membership


def _lock_owners(project: Project) -> list[Membership]:
    return list(
        Membership.objects.select_for_update()
        .filter(project=project, role=Role.OWNER)
        .order_by("created_at", "id")
    )


def _current(membership: Membership) -> Membership:
    """The membership as it is now (another request may have changed or removed it)."""
    current = (
        Membership.objects.select_for_update()
        .select_related("user")
        .filter(id=membership.id)
        .first()
    )
    if current is None:
        raise ProjectActionRefused(f"{membership.user.username} is no longer a member.")
    return current


def _sync_primary_owner(project: Project) -> None:
    """Keep Project.owner pointing at an owner (the longest-standing one if it must move)."""
    owners = Membership.objects.filter(project=project, role=Role.OWNER)
    if owners.filter(user_id=project.owner_id).exists():
        return
    first = owners.order_by("created_at", "id").first()
    if first is not None:
        project.owner_id = first.user_id
        Project.objects.filter(id=project.id).update(owner_id=first.user_id)


def membership_change_role(
    *, project: Project, actor: User, membership: Membership, role: Role
) -> Membership:
    with transaction.atomic():
        owners = _lock_owners(project)
        membership = _current(membership)
        if membership.role == role:
            return membership
        if membership.role == Role.OWNER and len(owners) <= 1:
            raise ProjectActionRefused(LAST_OWNER)
        old = Role(membership.role).label.lower()
        membership.role = role
        membership.save(update_fields=["role"])
        _sync_primary_owner(project)
        activity_record(
            project=project,
            actor=actor,
            verb=ActivityVerb.MEMBER_ROLE_CHANGED,
            description=(
                f"changed {membership.user.username}'s role from {old} to "
                f"{Role(role).label.lower()}"
            ),
        )
    return membership


def membership_remove(*, project: Project, actor: User, membership: Membership) -> None:
    """Remove a member (or, when `actor` is that member, leave the project)."""
    with transaction.atomic():
        owners = _lock_owners(project)
        membership = _current(membership)
        if membership.role == Role.OWNER and len(owners) <= 1:
            raise ProjectActionRefused(LAST_OWNER)
        leaving = membership.user_id == actor.id
        username = membership.user.username
        membership.delete()
        _sync_primary_owner(project)
        activity_record(
            project=project,
            actor=actor,
            verb=ActivityVerb.MEMBER_LEFT if leaving else ActivityVerb.MEMBER_REMOVED,
            description="left the project" if leaving else f"removed {username}",
        )


# Offered on the share form: label -> lifetime (None: until revoked).
SHARE_LIFETIMES: dict[str, timedelta | None] = {
    "1d": timedelta(days=1),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "never": None,
}


def share_link_create(
    *, project: Project, actor: User, lifetime: timedelta | None, label: str = ""
) -> ShareLink:
    """A new read-only link; its token carries 256 random bits (secrets.token_urlsafe(32))."""
    with transaction.atomic():
        link = ShareLink.objects.create(
            project=project,
            token=secrets.token_urlsafe(32),
            label=label.strip()[:120],
            created_by=actor,
            expires_at=timezone.now() + lifetime if lifetime else None,
        )
        expiry = f", expires {link.expires_at:%Y-%m-%d %H:%M} UTC" if link.expires_at else ""
        activity_record(
            project=project,
            actor=actor,
            verb=ActivityVerb.SHARE_CREATED,
            description=f"created a read-only share link{f' “{link.label}”' if link.label else ''}{expiry}",
        )
    return link


def share_link_revoke(*, link: ShareLink, actor: User) -> ShareLink:
    """Revoke a link; from now on its pages are 404. Revoking twice changes nothing."""
    now = timezone.now()
    with transaction.atomic():
        revoked = ShareLink.objects.filter(id=link.id, revoked_at__isnull=True).update(
            revoked_at=now
        )
        if revoked:
            activity_record(
                project=link.project_id,
                actor=actor,
                verb=ActivityVerb.SHARE_REVOKED,
                description=f"revoked a share link{f' “{link.label}”' if link.label else ''}",
            )
    link.refresh_from_db()
    return link
