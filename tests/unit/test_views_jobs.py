"""Job pages: the detail page, the self-replacing status fragment, cancel, and the Jobs lists."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from lifecycle_app.models import GenerationOutput, Job, JobKind, JobStatus, Project
from tests.factories import JobFactory, make_project

HTMX = {"HX-Request": "true"}  # request.META["HTTP_HX_REQUEST"] == "true"
JOB_POLL = 'hx-trigger="every 1s"'
TABLE_POLL = 'hx-trigger="every 2s"'
TERMINAL = [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED]


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("lifecycle_app.jobs.services._enqueue", lambda job_id: None)


@pytest.fixture
def client(owner: User) -> Client:
    client = Client()
    client.force_login(owner)
    return client


def make_job(project: Project, status: str = JobStatus.QUEUED, **fields: Any) -> Job:
    now = timezone.now()
    if status != JobStatus.QUEUED:
        fields.setdefault("started_at", now - timedelta(seconds=3))
        fields.setdefault("heartbeat_at", now)
    if status in TERMINAL:
        fields.setdefault("finished_at", now)
    job = JobFactory.create(project=project, created_by=project.owner, status=status, **fields)
    GenerationOutput.objects.create(job=job, index=0, prompt=job.params["prompt"])
    return job


def detail_url(job: Job) -> str:
    return reverse("job_detail", args=[job.project.slug, job.id])


def status_url(job: Job) -> str:
    return reverse("job_status", args=[job.project.slug, job.id])


def cancel_url(job: Job) -> str:
    return reverse("job_cancel", args=[job.project.slug, job.id])


def listed_ids(content: str) -> set[int]:
    return {int(m) for m in re.findall(r'data-job="(\d+)"', content)}


# --- Job page and status fragment -----------------------------------------------------


def test_it_shows_a_finished_jobs_status_and_output(client: Client, project: Project) -> None:
    job = make_job(project, JobStatus.SUCCEEDED, message="Done")
    GenerationOutput.objects.filter(job=job).update(
        text="The printer is jammed.", prompt_tokens=9, output_tokens=6, finish_reason="eos"
    )

    response = client.get(detail_url(job))

    content = response.content.decode()
    assert response.status_code == 200
    assert "<html" in content
    assert 'data-status="succeeded"' in content
    assert "Succeeded" in content
    assert "The printer is jammed." in content
    assert "9 prompt tokens · 6 generated · stopped: end of answer" in content
    assert JOB_POLL not in content


def test_it_shows_a_failed_jobs_error(client: Client, project: Project) -> None:
    job = make_job(project, JobStatus.FAILED, error="The model ran out of memory <oops>.")

    content = client.get(detail_url(job)).content.decode()

    assert 'data-status="failed"' in content
    assert "The model ran out of memory &lt;oops&gt;." in content
    assert 'class="error job-error" role="alert"' in content


def test_it_shows_the_jobs_prompt_and_parameters(client: Client, project: Project) -> None:
    job = make_job(project, params={"model_ref": "tiny", "prompt": "Hi there", "seed": 42})

    content = client.get(detail_url(job)).content.decode()

    assert "Hi there" in content
    assert "<dt>seed</dt><dd>42</dd>" in content
    assert "alice" in content


def test_it_shows_progress_while_a_job_runs(client: Client, project: Project) -> None:
    job = make_job(
        project, JobStatus.RUNNING, progress_done=4, progress_total=8, message="Generating"
    )

    content = client.get(status_url(job)).content.decode()

    assert 'aria-valuenow="50"' in content
    assert "Generating · 4 / 8 tokens" in content


@pytest.mark.parametrize("status", [JobStatus.QUEUED, JobStatus.RUNNING])
def test_it_keeps_polling_the_status_fragment_while_the_job_is_active(
    status: str, client: Client, project: Project
) -> None:
    job = make_job(project, status)

    response = client.get(status_url(job), headers=HTMX)

    content = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in content
    assert JOB_POLL in content
    assert f'hx-get="{status_url(job)}"' in content
    assert f'data-status="{status}"' in content


@pytest.mark.parametrize("status", TERMINAL)
def test_it_stops_polling_once_the_job_has_finished(
    status: str, client: Client, project: Project
) -> None:
    job = make_job(project, status)

    content = client.get(status_url(job), headers=HTMX).content.decode()

    assert "hx-trigger" not in content
    assert f'data-status="{status}"' in content
    assert "Cancel</button>" not in content


def test_it_offers_cancel_to_writers_only(client: Client, project: Project, teammate: User) -> None:
    job = make_job(project, JobStatus.RUNNING)
    viewer = Client()
    viewer.force_login(teammate)

    assert "Cancel</button>" in client.get(status_url(job)).content.decode()
    assert "Cancel</button>" not in viewer.get(status_url(job)).content.decode()


def test_it_reads_the_status_fragment_in_a_fixed_number_of_queries(
    client: Client, project: Project, django_assert_max_num_queries: Any
) -> None:
    job = make_job(project, JobStatus.RUNNING)

    # session, user, membership, job (with model and creator), outputs
    with django_assert_max_num_queries(5):
        client.get(status_url(job))


# --- Cancel ---------------------------------------------------------------------------


def test_it_cancels_a_queued_job_at_once(client: Client, project: Project) -> None:
    job = make_job(project)

    response = client.post(cancel_url(job))

    assert response.status_code == 302
    assert response["Location"] == detail_url(job)
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert job.finished_at is not None
    assert job.cancel_requested_at is not None


def test_it_answers_an_htmx_cancel_with_the_final_fragment(
    client: Client, project: Project
) -> None:
    job = make_job(project)

    response = client.post(cancel_url(job), headers=HTMX)

    content = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in content
    assert 'data-status="cancelled"' in content
    assert "hx-trigger" not in content


def test_it_asks_a_running_job_to_stop_and_keeps_it_running(
    client: Client, project: Project
) -> None:
    job = make_job(project, JobStatus.RUNNING)

    response = client.post(cancel_url(job), headers=HTMX)

    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING
    assert job.cancel_requested_at is not None
    assert job.finished_at is None
    content = response.content.decode()
    # Still polling, so the page sees the worker record "cancelled".
    assert JOB_POLL in content
    assert "disabled>Cancelling…</button>" in content


def test_it_leaves_a_finished_job_alone_when_asked_to_cancel(
    client: Client, project: Project
) -> None:
    job = make_job(project, JobStatus.SUCCEEDED)

    client.post(cancel_url(job))

    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    assert job.cancel_requested_at is None


# --- Jobs lists -----------------------------------------------------------------------


@pytest.fixture
def mixed_jobs(project: Project) -> dict[str, Job]:
    return {
        status: make_job(project, status)
        for status in (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.FAILED)
    }


@pytest.fixture(params=["project", "all"])
def list_url(request: pytest.FixtureRequest, project: Project) -> str:
    if request.param == "project":
        return reverse("project_jobs", args=[project.slug])
    return reverse("all_jobs")


def test_it_lists_the_jobs(client: Client, list_url: str, mixed_jobs: dict[str, Job]) -> None:
    response = client.get(list_url)

    assert response.status_code == 200
    assert listed_ids(response.content.decode()) == {job.id for job in mixed_jobs.values()}


def test_it_lists_the_newest_job_first(client: Client, list_url: str, project: Project) -> None:
    first, second = make_job(project), make_job(project)

    content = client.get(list_url).content.decode()

    assert content.index(f'data-job="{second.id}"') < content.index(f'data-job="{first.id}"')


def test_it_filters_by_status(client: Client, list_url: str, mixed_jobs: dict[str, Job]) -> None:
    content = client.get(list_url, {"status": "failed"}).content.decode()

    assert listed_ids(content) == {mixed_jobs[JobStatus.FAILED].id}
    assert '<option value="failed" selected>' in content


def test_it_filters_by_kind(client: Client, list_url: str, mixed_jobs: dict[str, Job]) -> None:
    content = client.get(list_url, {"kind": JobKind.GENERATE}).content.decode()

    assert listed_ids(content) == {job.id for job in mixed_jobs.values()}


def test_it_ignores_unknown_filter_values(
    client: Client, list_url: str, mixed_jobs: dict[str, Job]
) -> None:
    response = client.get(list_url, {"status": "exploded", "kind": "teleport"})

    assert response.status_code == 200
    assert listed_ids(response.content.decode()) == {job.id for job in mixed_jobs.values()}


def test_it_says_when_no_job_matches_the_filters(
    client: Client, list_url: str, mixed_jobs: dict[str, Job]
) -> None:
    content = client.get(list_url, {"status": "cancelled"}).content.decode()

    assert listed_ids(content) == set()
    assert "No jobs match these filters." in content


def test_it_shows_the_empty_state_without_jobs(client: Client, list_url: str) -> None:
    content = client.get(list_url).content.decode()

    assert "No jobs yet." in content
    assert TABLE_POLL not in content


def test_it_polls_the_table_while_a_job_is_active(
    client: Client, list_url: str, project: Project
) -> None:
    make_job(project, JobStatus.SUCCEEDED)
    make_job(project, JobStatus.RUNNING)

    assert TABLE_POLL in client.get(list_url).content.decode()


def test_it_stops_polling_the_table_when_every_job_has_finished(
    client: Client, list_url: str, project: Project
) -> None:
    for status in TERMINAL:
        make_job(project, status)

    assert TABLE_POLL not in client.get(list_url).content.decode()


def test_it_answers_htmx_with_only_the_table(
    client: Client, list_url: str, mixed_jobs: dict[str, Job]
) -> None:
    response = client.get(list_url, {"status": "running"}, headers=HTMX)

    content = response.content.decode()
    assert "<html" not in content
    assert content.lstrip().startswith('<div id="jobs-table"')
    assert 'hx-get="' in content and "status=running" in content
    assert listed_ids(content) == {mixed_jobs[JobStatus.RUNNING].id}


def test_it_lists_only_jobs_of_the_users_projects(
    project: Project, owner: User, teammate: User, outsider: User
) -> None:
    ours = make_job(project)
    other_of_alice = make_job(make_project(owner, name="Alice alone"))
    charlies = make_job(make_project(outsider, name="Charlie's"))

    def ids_for(user: User) -> set[int]:
        client = Client()
        client.force_login(user)
        return listed_ids(client.get(reverse("all_jobs")).content.decode())

    assert ids_for(owner) == {ours.id, other_of_alice.id}
    assert ids_for(teammate) == {ours.id}
    assert ids_for(outsider) == {charlies.id}


def test_it_lists_only_this_projects_jobs_on_the_project_page(
    client: Client, project: Project, owner: User
) -> None:
    ours = make_job(project)
    make_job(make_project(owner, name="Alice alone"))

    content = client.get(reverse("project_jobs", args=[project.slug])).content.decode()

    assert listed_ids(content) == {ours.id}


@pytest.mark.parametrize("n_jobs", [3, 10])
def test_it_lists_all_jobs_in_a_fixed_number_of_queries(
    n_jobs: int,
    client: Client,
    project: Project,
    owner: User,
    django_assert_max_num_queries: Any,
) -> None:
    second = make_project(owner, name="Second")
    for i in range(n_jobs):
        make_job(project if i % 2 else second, JobStatus.RUNNING if i % 3 else JobStatus.FAILED)

    # session, user, jobs (with project, creator and model)
    with django_assert_max_num_queries(3):
        response = client.get(reverse("all_jobs"))

    assert len(listed_ids(response.content.decode())) == n_jobs


@pytest.mark.parametrize("n_jobs", [3, 10])
def test_it_lists_a_projects_jobs_in_a_fixed_number_of_queries(
    n_jobs: int, client: Client, project: Project, django_assert_max_num_queries: Any
) -> None:
    for i in range(n_jobs):
        make_job(project, JobStatus.SUCCEEDED if i % 2 else JobStatus.QUEUED)

    # session, user, membership, jobs (with project, creator and model)
    with django_assert_max_num_queries(4):
        response = client.get(reverse("project_jobs", args=[project.slug]))

    assert len(listed_ids(response.content.decode())) == n_jobs
