"""Share links: read-only pages for people without an account, revocable, expiring."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.template import Context, Template
from django.test import Client
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from lifecycle_app.models import (
    Activity,
    ActivityVerb,
    CatalogModel,
    GenerationOutput,
    Job,
    JobStatus,
    Project,
    ShareLink,
)
from lifecycle_app.projects import steps
from lifecycle_app.teams.services import share_link_create, share_link_revoke
from tests.factories import JobFactory, make_project, scope_data


@pytest.fixture
def link(project: Project, owner: User) -> ShareLink:
    return share_link_create(project=project, actor=owner, lifetime=None, label="Reviewers")


@pytest.fixture
def job(project: Project, owner: User, tiny_model: CatalogModel) -> Job:
    job = JobFactory.create(
        project=project, created_by=owner, base_model=tiny_model, status=JobStatus.RUNNING
    )
    GenerationOutput.objects.create(job=job, prompt="Hello", text="Hi there")
    return job


def _share_pages(link: ShareLink, job: Job) -> list[str]:
    token = link.token
    return [
        reverse("share_project", args=[token]),
        reverse("share_jobs", args=[token]),
        reverse("share_job", args=[token, job.id]),
        reverse("share_job_status", args=[token, job.id]),
        *(
            reverse("share_step", args=[token, stage.key.value, step.slug])
            for stage in steps.STAGES
            for step in stage.steps
        ),
    ]


def test_an_owner_creates_a_link_with_an_unguessable_token_and_an_expiry(
    project: Project, owner: User
) -> None:
    client = Client()
    client.force_login(owner)

    response = client.post(
        reverse("share_create", args=[project.slug]), {"label": "Board", "lifetime": "7d"}
    )

    assert response.status_code == 302
    link = ShareLink.objects.get(project=project)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", link.token)  # 32 random bytes
    assert link.created_by == owner
    assert link.expires_at is not None
    remaining = link.expires_at - timezone.now()
    assert timedelta(days=6, hours=23) < remaining <= timedelta(days=7)
    page = client.get(reverse("members", args=[project.slug])).content.decode()
    assert f"/s/{link.token}/" in page
    assert Activity.objects.filter(verb=ActivityVerb.SHARE_CREATED).exists()


def test_two_links_never_share_a_token(project: Project, owner: User) -> None:
    tokens = {
        share_link_create(project=project, actor=owner, lifetime=None).token for _ in range(20)
    }
    assert len(tokens) == 20


@pytest.mark.parametrize("view", ["share_project", "share_jobs"])
def test_anyone_with_the_link_reads_the_project_without_logging_in(
    view: str, link: ShareLink, job: Job
) -> None:
    response = Client().get(reverse(view, args=[link.token]))

    assert response.status_code == 200
    html = response.content.decode()
    assert link.project.name in html
    assert "Read-only view" in html


def test_every_share_page_has_no_controls_downloads_or_member_links(
    link: ShareLink, job: Job, tiny_model: CatalogModel, owner: User
) -> None:
    project = link.project
    member = Client()
    member.force_login(owner)
    member.post(reverse("wizard_step", args=[project.slug, "scope", "use-case"]), scope_data())
    client = Client()
    for url in _share_pages(link, job):
        response = client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert 'method="post"' not in html, f"{url} has a form that writes"
        # The one form left is the job list's status/kind filter (a GET).
        html = re.sub(r'<form class="filters" method="get".*?</form>', "", html, flags=re.S)
        assert "<button" not in html, f"{url} has a button"
        assert "<form" not in html, f"{url} has a form"
        assert "/download/" not in html, f"{url} links a download"
        for path in re.findall(r'(?:href|hx-get|hx-post|action)="([^"]+)"', html):
            assert not path.startswith(f"/p/{project.slug}"), f"{url} links the member page {path}"
            assert not path.startswith("/p/"), f"{url} links {path}"
        assert "Cancel" not in html


def test_the_scope_step_shows_the_saved_answers_in_disabled_fields(
    link: ShareLink, project: Project
) -> None:
    client = Client()
    client.force_login(project.owner)
    client.post(reverse("wizard_step", args=[project.slug, "scope", "use-case"]), scope_data())

    html = Client().get(reverse("share_step", args=[link.token, "scope", "use-case"])).content
    page = html.decode()

    assert "Support agents summarise long customer tickets" in page
    assert "Ticket 2: the printer on floor 2 is jammed again." in page
    assert '<fieldset class="read-only" disabled>' in page
    assert re.search(r'<textarea[^>]*name="use_case"[^>]*disabled', page)
    assert re.search(r'<textarea[^>]*name="ex-0-input"[^>]*disabled', page)
    assert "Save and continue" not in page


def test_a_running_jobs_fragment_polls_its_share_url_and_has_no_cancel(
    link: ShareLink, job: Job
) -> None:
    status_url = reverse("share_job_status", args=[link.token, job.id])

    html = Client().get(status_url, headers={"HX-Request": "true"}).content.decode()

    assert f'hx-get="{status_url}"' in html
    assert "Hi there" in html
    assert "cancel" not in html.lower()


def test_a_share_page_ignores_a_planner_query_and_shows_the_saved_plan(
    link: ShareLink, tiny_model: CatalogModel
) -> None:
    url = reverse("share_step", args=[link.token, "select", "plan"])

    response = Client().get(url, {"batch_size": "999999", "base_model": tiny_model.slug})

    assert response.status_code == 200
    assert 'value="999999"' not in response.content.decode()


@pytest.mark.parametrize("state", ["revoked", "expired"])
def test_a_revoked_or_expired_link_is_404_on_every_share_page(
    state: str, link: ShareLink, job: Job, owner: User
) -> None:
    pages = _share_pages(link, job)
    client = Client()
    assert client.get(pages[0]).status_code == 200
    if state == "revoked":
        share_link_revoke(link=link, actor=owner)
    else:
        ShareLink.objects.filter(id=link.id).update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )

    assert {client.get(url).status_code for url in pages} == {404}


def test_revoking_through_the_members_page(project: Project, owner: User, link: ShareLink) -> None:
    client = Client()
    client.force_login(owner)

    response = client.post(reverse("share_revoke", args=[project.slug, link.id]))

    assert response.status_code == 302
    link.refresh_from_db()
    assert link.revoked_at is not None
    assert Client().get(reverse("share_project", args=[link.token])).status_code == 404
    # Revoking again changes nothing and records nothing more.
    revoked_at = link.revoked_at
    client.post(reverse("share_revoke", args=[project.slug, link.id]))
    link.refresh_from_db()
    assert link.revoked_at == revoked_at
    assert Activity.objects.filter(verb=ActivityVerb.SHARE_REVOKED).count() == 1


@pytest.mark.parametrize("token", ["short", "x" * 43, "a" * 65, "has space" + "x" * 30])
def test_a_token_that_does_not_exist_is_404(token: str, link: ShareLink) -> None:
    assert Client().get(f"/s/{token}/").status_code == 404


def test_a_link_opens_only_its_own_project(link: ShareLink, owner: User) -> None:
    other = make_project(owner, "Secret project")
    foreign_job = JobFactory.create(project=other, created_by=owner)
    client = Client()

    assert client.get(reverse("share_job", args=[link.token, foreign_job.id])).status_code == 404
    assert client.get(reverse("project_detail", args=[other.slug])).status_code == 302
    assert client.get(reverse("project_detail", args=[link.project.slug])).status_code == 302


def test_share_pages_keep_the_token_out_of_caches_referrers_and_indexes(
    link: ShareLink,
) -> None:
    response = Client().get(reverse("share_project", args=[link.token]))

    assert response["Cache-Control"] == "no-store"
    assert response["Referrer-Policy"] == "no-referrer"
    assert response["X-Robots-Tag"] == "noindex, nofollow"


def test_share_pages_take_get_only(link: ShareLink) -> None:
    assert Client().post(reverse("share_project", args=[link.token])).status_code == 405


def test_the_share_overview_leaves_out_the_team_activity(link: ShareLink, project: Project) -> None:
    member_page = Client()
    member_page.force_login(project.owner)
    assert (
        "Recent activity"
        in member_page.get(reverse("project_detail", args=[project.slug])).content.decode()
    )

    html = Client().get(reverse("share_project", args=[link.token])).content.decode()

    assert "Recent activity" not in html
    assert "created the project" not in html


def test_the_project_url_tag_refuses_a_link_with_no_read_only_page(link: ShareLink) -> None:
    template = Template("{% load lifecycle %}{% project_url name %}")
    ctx: dict[str, Any] = {"project": link.project, "share": link}

    assert template.render(Context({**ctx, "name": "project_jobs"})) == (f"/s/{link.token}/jobs/")
    assert template.render(Context({"project": link.project, "name": "project_jobs"})) == (
        f"/p/{link.project.slug}/jobs/"
    )
    with pytest.raises(NoReverseMatch, match="no read-only share page"):
        template.render(Context({**ctx, "name": "dataset_list"}))


def test_the_share_overview_reads_a_bounded_number_of_queries(
    link: ShareLink, job: Job, django_assert_max_num_queries: Any
) -> None:
    for _ in range(5):
        JobFactory.create(project=link.project, created_by=link.created_by)
    client = Client()
    with django_assert_max_num_queries(6):
        client.get(reverse("share_jobs", args=[link.token]))
