"""Members: invite by username or email, change roles, remove, leave, always one owner."""

from __future__ import annotations

from typing import Any, cast

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from lifecycle_app.models import Activity, ActivityVerb, Job, Membership, Project, Role
from lifecycle_app.projects.services import ProjectActionRefused
from lifecycle_app.teams.services import (
    membership_change_role,
    membership_invite,
    membership_remove,
)
from tests.factories import JobFactory, UserFactory, make_project

HTMX = {"HX-Request": "true"}


@pytest.fixture
def dave(db: None) -> User:
    return cast(User, UserFactory(username="dave", email="Dave@Example.com"))


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _role(project: Project, user: User) -> str | None:
    m = Membership.objects.filter(project=project, user=user).first()
    return m.role if m else None


def _messages(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def test_every_member_sees_the_member_list_but_only_owners_see_the_controls(
    project: Project, owner: User, teammate: User
) -> None:
    owner_html = _client(owner).get(reverse("members", args=[project.slug])).content.decode()
    viewer_html = _client(teammate).get(reverse("members", args=[project.slug])).content.decode()

    for html in (owner_html, viewer_html):
        assert "alice" in html and "bob" in html
    assert reverse("member_invite", args=[project.slug]) in owner_html
    assert "Create share link" in owner_html
    assert reverse("member_invite", args=[project.slug]) not in viewer_html
    assert "Share links" not in viewer_html
    assert "Leave this project" in viewer_html


def test_an_owner_invites_an_existing_user_by_username(
    project: Project, owner: User, dave: User
) -> None:
    response = _client(owner).post(
        reverse("member_invite", args=[project.slug]),
        {"identifier": "DAVE", "role": "editor"},
        follow=True,
    )

    assert response.status_code == 200
    assert _role(project, dave) == Role.EDITOR
    assert any("dave is now editor" in m for m in _messages(response))
    # And the project is in dave's list at once.
    listing = _client(dave).get(reverse("project_list")).content.decode()
    assert project.name in listing


def test_an_owner_invites_by_email_case_insensitively(
    project: Project, owner: User, dave: User
) -> None:
    _client(owner).post(
        reverse("member_invite", args=[project.slug]),
        {"identifier": "dave@example.COM", "role": "viewer"},
    )

    assert _role(project, dave) == Role.VIEWER


@pytest.mark.parametrize(
    ("identifier", "message"),
    [
        ("nobody", "No account matches “nobody”"),
        ("bob", "bob is already a member"),
        ("   ", "This field is required."),
    ],
)
def test_an_invite_that_cannot_be_done_says_why_on_the_form(
    identifier: str, message: str, project: Project, owner: User
) -> None:
    before = Membership.objects.count()

    response = _client(owner).post(
        reverse("member_invite", args=[project.slug]), {"identifier": identifier, "role": "editor"}
    )

    assert response.status_code == 200
    assert message in response.content.decode()
    assert Membership.objects.count() == before


def test_an_email_shared_by_two_accounts_asks_for_a_username(
    project: Project, owner: User, dave: User
) -> None:
    UserFactory(username="dave2", email="dave@example.com")

    with pytest.raises(ProjectActionRefused, match="invite the person by username"):
        membership_invite(
            project=project, actor=owner, identifier="dave@example.com", role=Role.EDITOR
        )


def test_an_owner_changes_a_role(project: Project, owner: User, teammate: User) -> None:
    member = Membership.objects.get(project=project, user=teammate)

    _client(owner).post(reverse("member_role", args=[project.slug, member.id]), {"role": "editor"})

    assert _role(project, teammate) == Role.EDITOR
    entry = Activity.objects.filter(verb=ActivityVerb.MEMBER_ROLE_CHANGED).get()
    assert entry.actor == owner
    assert entry.description == "changed bob's role from viewer to editor"


def test_the_last_owner_cannot_be_demoted_removed_or_leave(project: Project, owner: User) -> None:
    me = Membership.objects.get(project=project, user=owner)
    client = _client(owner)

    demote = client.post(
        reverse("member_role", args=[project.slug, me.id]), {"role": "viewer"}, follow=True
    )
    remove = client.post(reverse("member_remove", args=[project.slug, me.id]), follow=True)
    leave = client.post(reverse("member_leave", args=[project.slug]), follow=True)

    for response in (demote, remove, leave):
        assert any("at least one owner" in m for m in _messages(response)), _messages(response)
    assert _role(project, owner) == Role.OWNER


def test_an_owner_may_step_down_once_someone_else_owns_the_project(
    project: Project, owner: User, teammate: User
) -> None:
    bob = Membership.objects.get(project=project, user=teammate)
    membership_change_role(project=project, actor=owner, membership=bob, role=Role.OWNER)
    me = Membership.objects.get(project=project, user=owner)

    membership_change_role(project=project, actor=owner, membership=me, role=Role.EDITOR)

    project.refresh_from_db()
    assert _role(project, owner) == Role.EDITOR
    assert project.owner == teammate  # the primary owner moves to a remaining owner


def test_removing_a_member_removes_their_access_immediately(
    project: Project, owner: User, teammate: User
) -> None:
    job = JobFactory.create(project=project, created_by=owner)
    bob = _client(teammate)
    pages = [
        reverse("project_detail", args=[project.slug]),
        reverse("job_status", args=[project.slug, job.id]),
        reverse("members", args=[project.slug]),
    ]
    assert all(bob.get(url).status_code == 200 for url in pages)
    member = Membership.objects.get(project=project, user=teammate)

    _client(owner).post(reverse("member_remove", args=[project.slug, member.id]))

    # Same session, next request (a page, or the job fragment's next poll): gone.
    assert [bob.get(url).status_code for url in pages] == [404, 404, 404]
    assert project.name not in bob.get(reverse("project_list")).content.decode()
    assert Activity.objects.filter(verb=ActivityVerb.MEMBER_REMOVED).get().description == (
        "removed bob"
    )


def test_a_member_leaves_a_project(project: Project, teammate: User) -> None:
    response = _client(teammate).post(reverse("member_leave", args=[project.slug]))

    assert response.status_code == 302
    assert response["Location"] == reverse("project_list")
    assert _role(project, teammate) is None
    assert Activity.objects.filter(verb=ActivityVerb.MEMBER_LEFT, actor=teammate).exists()


def test_an_editor_cannot_manage_members(project: Project, owner: User, teammate: User) -> None:
    Membership.objects.filter(project=project, user=teammate).update(role=Role.EDITOR)
    alice = Membership.objects.get(project=project, user=owner)
    bob = _client(teammate)

    assert (
        bob.post(
            reverse("member_role", args=[project.slug, alice.id]), {"role": "viewer"}
        ).status_code
        == 403
    )
    assert bob.post(reverse("member_remove", args=[project.slug, alice.id])).status_code == 403
    assert (
        bob.post(
            reverse("member_invite", args=[project.slug]), {"identifier": "bob", "role": "owner"}
        ).status_code
        == 403
    )
    assert _role(project, owner) == Role.OWNER
    assert _role(project, teammate) == Role.EDITOR


def test_a_member_of_another_project_cannot_be_addressed_through_this_one(
    project: Project, owner: User, dave: User
) -> None:
    other = make_project(owner, "Other")
    foreign = Membership.objects.create(project=other, user=dave, role=Role.VIEWER)

    response = _client(owner).post(reverse("member_remove", args=[project.slug, foreign.id]))

    assert response.status_code == 404
    assert Membership.objects.filter(id=foreign.id).exists()


def test_removing_a_member_twice_concurrently_is_refused_cleanly(
    project: Project, owner: User, teammate: User
) -> None:
    member = Membership.objects.get(project=project, user=teammate)
    stale = Membership.objects.get(id=member.id)
    membership_remove(project=project, actor=owner, membership=member)

    with pytest.raises(ProjectActionRefused, match="bob is no longer a member"):
        membership_remove(project=project, actor=owner, membership=stale)


def test_an_owner_deletes_a_project_after_typing_its_name(project: Project, owner: User) -> None:
    client = _client(owner)
    url = reverse("project_delete", args=[project.slug])

    wrong = client.post(url, {"confirm": "nope"})
    assert wrong.status_code == 200
    assert "That is not the project" in wrong.content.decode()
    assert Project.objects.filter(id=project.id).exists()

    right = client.post(url, {"confirm": project.name})
    assert right.status_code == 302
    assert not Project.objects.filter(id=project.id).exists()


def test_a_project_with_active_jobs_is_not_deleted(project: Project, owner: User) -> None:
    JobFactory.create(project=project, created_by=owner)

    response = _client(owner).post(
        reverse("project_delete", args=[project.slug]), {"confirm": project.name}
    )

    assert response.status_code == 200
    assert "still queued or running" in response.content.decode()
    assert Project.objects.filter(id=project.id).exists()
    assert Job.objects.filter(project=project).count() == 1
