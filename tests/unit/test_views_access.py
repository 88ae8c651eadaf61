"""Who may reach which project page: members see, viewers cannot write, everyone else gets 404."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from lifecycle_app.models import Job, JobStatus, Project, Stage
from lifecycle_app.projects import steps
from tests.factories import JobFactory, make_project


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    sent: list[int] = []
    monkeypatch.setattr("lifecycle_app.jobs.services._enqueue", sent.append)
    return sent


@dataclass(frozen=True)
class Page:
    name: str
    methods: tuple[str, ...]
    url: Callable[[Project, Job], str]

    def __str__(self) -> str:
        return self.name


def _project_url(name: str) -> Callable[[Project, Job], str]:
    return lambda project, job: reverse(name, args=[project.slug])


def _job_url(name: str) -> Callable[[Project, Job], str]:
    return lambda project, job: reverse(name, args=[project.slug, job.id])


def _step_url(stage: str, step: str) -> Callable[[Project, Job], str]:
    return lambda project, job: reverse("wizard_step", args=[project.slug, stage, step])


AVAILABLE_STEPS = [
    (stage.key.value, step.slug) for stage in steps.STAGES for step in stage.steps if step.available
]
# Steps still "coming later" (none once every stage is built): GET only.
PLANNED_STEPS = [
    (stage.key.value, step.slug)
    for stage in steps.STAGES
    for step in stage.steps
    if not step.available
]

PAGES = [
    Page("project_detail", ("GET",), _project_url("project_detail")),
    Page("project_jobs", ("GET",), _project_url("project_jobs")),
    Page("job_detail", ("GET",), _job_url("job_detail")),
    Page("job_status", ("GET",), _job_url("job_status")),
    Page("job_cancel", ("POST",), _job_url("job_cancel")),
    *(
        Page(f"wizard_step:{stage}/{step}", ("GET", "POST"), _step_url(stage, step))
        for stage, step in AVAILABLE_STEPS
    ),
    # A planned step has no form: POST is 405 (tests/test_permission_matrix.py walks them all).
    *(
        Page(f"wizard_step:{stage}/{step}:planned", ("GET",), _step_url(stage, step))
        for stage, step in PLANNED_STEPS
    ),
]
PAGE_METHODS = [
    pytest.param(page, method, id=f"{page}-{method}") for page in PAGES for method in page.methods
]
GET_PAGES = [pytest.param(page, id=str(page)) for page in PAGES if "GET" in page.methods]
WIZARD_STEPS = [
    pytest.param(page, id=str(page))
    for page in PAGES
    if page.name.startswith("wizard_step") and "POST" in page.methods
]
JOB_PAGES = [
    pytest.param(page, method, id=f"{page}-{method}")
    for page in PAGES
    if page.name.startswith("job_")
    for method in page.methods
]


@pytest.fixture
def job(project: Project, owner: User) -> Job:
    return JobFactory.create(project=project, created_by=owner)


def _client_for(user: User | None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def _request(client: Client, method: str, url: str) -> Any:
    return client.get(url) if method == "GET" else client.post(url)


def _stage_steps(project: Project) -> dict[str, dict[str, Any]]:
    return {stage.key: stage.steps for stage in Stage.objects.filter(project=project)}


@pytest.mark.parametrize(("page", "method"), PAGE_METHODS)
def test_it_answers_404_to_an_outsider(
    page: Page, method: str, project: Project, job: Job, outsider: User
) -> None:
    before = _stage_steps(project)

    response = _request(_client_for(outsider), method, page.url(project, job))

    assert response.status_code == 404
    assert _stage_steps(project) == before
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    assert Job.objects.count() == 1


@pytest.mark.parametrize(("page", "method"), PAGE_METHODS)
def test_it_redirects_an_anonymous_user_to_login(
    page: Page, method: str, project: Project, job: Job
) -> None:
    url = page.url(project, job)

    response = _request(_client_for(None), method, url)

    assert response.status_code == 302
    login = reverse(django_settings.LOGIN_URL)
    assert response["Location"].startswith(f"{login}?next=")
    assert Job.objects.count() == 1


@pytest.mark.parametrize(("page", "method"), JOB_PAGES)
def test_it_answers_404_for_a_job_id_that_does_not_exist(
    page: Page, method: str, project: Project, job: Job, owner: User
) -> None:
    missing = Job(id=job.id + 1000)

    response = _request(_client_for(owner), method, page.url(project, missing))

    assert response.status_code == 404


@pytest.mark.parametrize(("page", "method"), JOB_PAGES)
def test_it_answers_404_for_another_projects_job_addressed_through_this_project(
    page: Page, method: str, project: Project, owner: User
) -> None:
    # The owner is a member of both projects: only the scoping can refuse this.
    other = make_project(owner, name="Another project")
    foreign = JobFactory.create(project=other, created_by=owner)

    response = _request(_client_for(owner), method, page.url(project, foreign))

    assert response.status_code == 404
    foreign.refresh_from_db()
    assert foreign.status == JobStatus.QUEUED


@pytest.mark.parametrize("page", GET_PAGES)
def test_it_lets_a_viewer_read_every_page(
    page: Page, project: Project, job: Job, teammate: User
) -> None:
    response = _client_for(teammate).get(page.url(project, job))

    assert response.status_code == 200


@pytest.mark.parametrize("page", WIZARD_STEPS)
def test_it_forbids_a_viewer_to_post_a_wizard_step(
    page: Page, project: Project, job: Job, teammate: User, tiny_model: Any
) -> None:
    before = _stage_steps(project)

    response = _client_for(teammate).post(
        page.url(project, job), {"base_model": tiny_model.slug, "prompt": "Hello"}
    )

    assert response.status_code == 403
    assert _stage_steps(project) == before
    assert Job.objects.count() == 1


def test_it_forbids_a_viewer_to_cancel_a_job(project: Project, job: Job, teammate: User) -> None:
    response = _client_for(teammate).post(reverse("job_cancel", args=[project.slug, job.id]))

    assert response.status_code == 403
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    assert job.cancel_requested_at is None


@pytest.mark.parametrize(
    ("page", "method"),
    [
        pytest.param(page, method, id=f"{page}-{method}")
        for page in PAGES
        for method in ("GET", "POST", "PUT", "DELETE")
        if method not in page.methods
    ],
)
def test_it_answers_405_to_a_method_the_view_does_not_accept(
    page: Page, method: str, project: Project, job: Job, owner: User
) -> None:
    client = _client_for(owner)

    response = getattr(client, method.lower())(page.url(project, job))

    assert response.status_code == 405
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED


@pytest.mark.parametrize("path", ["/", "/jobs/"])
def test_it_redirects_an_anonymous_user_from_the_cross_project_pages(path: str, db: None) -> None:
    response = Client().get(path)

    assert response.status_code == 302
    assert response["Location"].startswith(f"{reverse('login')}?next=")


def test_it_answers_404_for_a_project_that_does_not_exist(owner: User) -> None:
    response = _client_for(owner).get(reverse("project_detail", args=["no-such-project"]))

    assert response.status_code == 404


def test_it_answers_404_for_a_step_that_does_not_exist(project: Project, owner: User) -> None:
    response = _client_for(owner).get(
        reverse("wizard_step", args=[project.slug, "scope", "no-such-step"])
    )

    assert response.status_code == 404
