"""The activity feed: services record who did what; the project page shows the latest 20."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from lifecycle_app.datasets import services as dataset_services
from lifecycle_app.datasets.services import Mapping
from lifecycle_app.jobs import services as job_services
from lifecycle_app.models import Activity, ActivityVerb, CatalogModel, Job, JobStatus, Project
from lifecycle_app.projects.activity import activity_record
from tests.factories import JobFactory, prompt_data, scope_data

ROWS = "".join(f'{{"input": "ticket {i}", "target": "summary {i}"}}\n' for i in range(10))


@pytest.fixture(autouse=True)
def _storage(settings: Any, tmp_path: Path) -> None:
    settings.DATASETS_DIR = tmp_path / "datasets"
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path)


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _feed(project: Project) -> list[tuple[str | None, str, str]]:
    return [
        (a.actor.username if a.actor else None, a.verb, a.description)
        for a in Activity.objects.filter(project=project).select_related("actor").order_by("id")
    ]


def test_creating_a_project_is_the_first_entry(project: Project) -> None:
    assert _feed(project) == [("alice", ActivityVerb.PROJECT_CREATED, "created the project")]


def test_saving_a_step_records_it_but_a_jobs_bookkeeping_does_not(
    project: Project, owner: User, tiny_model: CatalogModel, enqueued: list[int]
) -> None:
    client = _client(owner)
    client.post(reverse("wizard_step", args=[project.slug, "scope", "use-case"]), scope_data())
    client.post(reverse("playground", args=[project.slug]), prompt_data(tiny_model))

    feed = _feed(project)[1:]
    job_id = Job.objects.get().id
    assert feed == [
        ("alice", ActivityVerb.STEP_SAVED, "saved Scope › Define the use case"),
        ("alice", ActivityVerb.JOB_STARTED, f"started Generate job #{job_id}"),
    ]


def test_a_job_is_recorded_when_started_cancelled_and_finished(
    project: Project, owner: User, tiny_model: CatalogModel, enqueued: list[int]
) -> None:
    client = _client(owner)
    client.post(reverse("playground", args=[project.slug]), prompt_data(tiny_model))
    job_id = Job.objects.get().id
    job_services.job_claim(job_id=job_id, worker="w1")
    client.post(reverse("job_cancel", args=[project.slug, job_id]))
    job_services.job_mark_cancelled(job_id=job_id)
    job_services.job_mark_cancelled(job_id=job_id)  # a duplicate finish records nothing

    assert _feed(project)[1:] == [
        ("alice", ActivityVerb.JOB_STARTED, f"started Generate job #{job_id}"),
        ("alice", ActivityVerb.JOB_CANCELLED, f"cancelled Generate job #{job_id}"),
        (None, ActivityVerb.JOB_FINISHED, f"Generate job #{job_id} by alice cancelled"),
    ]
    assert Activity.objects.filter(job_id=job_id).count() == 3


@pytest.mark.parametrize(
    ("finish", "word"),
    [
        (lambda job_id: job_services.job_succeed(job_id=job_id, result={}), "succeeded"),
        (lambda job_id: job_services.job_fail(job_id=job_id, error="boom"), "failed"),
    ],
)
def test_a_worker_finishing_a_job_is_recorded_without_an_actor(
    finish: Any, word: str, project: Project, owner: User
) -> None:
    job = JobFactory.create(project=project, created_by=owner, status=JobStatus.RUNNING)

    finish(job.id)

    last = Activity.objects.filter(project=project).latest("id")
    assert (last.actor, last.verb, last.job_id) == (None, ActivityVerb.JOB_FINISHED, job.id)
    assert last.description == f"Generate job #{job.id} by alice {word}"


def test_the_reaper_records_the_jobs_it_fails(project: Project, owner: User) -> None:
    long_ago = timezone.now() - timedelta(hours=1)
    job = JobFactory.create(
        project=project,
        created_by=owner,
        status=JobStatus.RUNNING,
        started_at=long_ago,
        heartbeat_at=long_ago,
    )

    assert job_services.job_reap_stale() == 1

    last = Activity.objects.filter(project=project).latest("id")
    assert last.description == f"Generate job #{job.id} by alice failed"


def test_uploads_renames_and_deletes_of_datasets_are_recorded(
    project: Project, owner: User, tiny_model: CatalogModel, enqueued: list[int]
) -> None:
    staged = dataset_services.dataset_stage_text(project=project, user=owner, text=ROWS)
    dataset = dataset_services.dataset_create_from_staged(
        project=project,
        user=owner,
        staged=staged,
        mapping=Mapping("input", "target", False, 1, (0.8, 0.1, 0.1)),
        name="Tickets",
        profile_model=tiny_model,
    )
    client = _client(owner)
    client.post(reverse("dataset_rename", args=[project.slug, dataset.id]), {"name": "Tickets v2"})
    client.post(reverse("dataset_delete", args=[project.slug, dataset.id]))

    descriptions = [d for _, _, d in _feed(project)[1:]]
    assert descriptions == [
        "uploaded dataset “Tickets” (10 rows)",
        f"started Dataset profile job #{Job.objects.get().id}",
        "renamed dataset “Tickets” to “Tickets v2”",
        "deleted dataset “Tickets v2”",
    ]


def test_the_project_page_shows_the_latest_twenty_newest_first(
    project: Project, owner: User, django_assert_max_num_queries: Any
) -> None:
    for i in range(25):
        activity_record(
            project=project, actor=owner, verb=ActivityVerb.STEP_SAVED, description=f"did {i:02d}"
        )

    client = _client(owner)
    with django_assert_max_num_queries(8):
        html = client.get(reverse("project_detail", args=[project.slug])).content.decode()

    assert "did 24" in html and "did 05" in html
    assert "did 04" not in html
    assert html.index("did 24") < html.index("did 05")


def test_the_project_page_has_an_empty_state(project: Project, owner: User) -> None:
    Activity.objects.all().delete()

    html = _client(owner).get(reverse("project_detail", args=[project.slug])).content.decode()

    assert "Nothing has happened here yet." in html


def test_viewers_see_the_feed_too(project: Project, teammate: User) -> None:
    html = _client(teammate).get(reverse("project_detail", args=[project.slug])).content.decode()

    assert "<strong>alice</strong> created the project" in html
