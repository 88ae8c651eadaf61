"""Job submission limits: queued + running jobs per person and per project, for every kind."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from lifecycle_app.catalog.services import catalog_model_register
from lifecycle_app.datasets import services as dataset_services
from lifecycle_app.jobs.services import JobLimitReached, job_create
from lifecycle_app.models import Job, JobKind, JobStatus, Membership, Project, Role
from tests.factories import JobFactory, UserFactory, make_project, prompt_data

HTMX = {"HX-Request": "true"}


@pytest.fixture(autouse=True)
def _limits(settings: Any, tmp_path: Path) -> None:
    settings.JOB_LIMIT_ACTIVE_PER_USER = 2
    settings.JOB_LIMIT_ACTIVE_PER_PROJECT = 3
    settings.DATASETS_DIR = tmp_path / "datasets"
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path)


def _busy(project: Project, user: User, n: int, status: str = JobStatus.QUEUED) -> None:
    for _ in range(n):
        JobFactory.create(project=project, created_by=user, status=status)


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_defaults_come_from_settings() -> None:
    from lifecycle_app import settings as app_settings

    assert app_settings.JOB_LIMIT_ACTIVE_PER_USER == 3
    assert app_settings.JOB_LIMIT_ACTIVE_PER_PROJECT == 5


def test_a_person_at_their_limit_gets_a_clear_message_on_the_prompt_step(
    project: Project, owner: User, tiny_model: Any, enqueued: list[int]
) -> None:
    other = make_project(owner, "Elsewhere")
    _busy(project, owner, 1, JobStatus.RUNNING)
    _busy(other, owner, 1)  # the per-person limit counts every project

    response = _client(owner).post(
        reverse("playground", args=[project.slug]),
        prompt_data(tiny_model),
        headers=HTMX,
    )

    assert response.status_code == 200
    html = response.content.decode()
    assert "You already have 2 jobs queued or running (the limit is 2 per person)" in html
    assert Job.objects.count() == 2


def test_finished_jobs_do_not_count(
    project: Project, owner: User, tiny_model: Any, enqueued: list[int]
) -> None:
    for status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED):
        _busy(project, owner, 2, status)

    response = _client(owner).post(
        reverse("playground", args=[project.slug]), prompt_data(tiny_model)
    )

    assert response.status_code == 302
    assert Job.objects.filter(status=JobStatus.QUEUED).count() == 1


def test_a_project_at_its_limit_refuses_every_member(
    project: Project, owner: User, tiny_model: Any, enqueued: list[int]
) -> None:
    erin = cast(User, UserFactory(username="erin"))
    Membership.objects.create(project=project, user=erin, role=Role.EDITOR)
    helpers = [cast(User, UserFactory(username=f"helper{i}")) for i in range(3)]
    for helper in helpers:
        _busy(project, helper, 1)

    response = _client(erin).post(
        reverse("playground", args=[project.slug]), prompt_data(tiny_model)
    )

    assert response.status_code == 200
    assert "This project already has 3 jobs queued or running" in response.content.decode()


@pytest.mark.parametrize("setting", ["JOB_LIMIT_ACTIVE_PER_USER", "JOB_LIMIT_ACTIVE_PER_PROJECT"])
def test_zero_turns_a_limit_off(
    setting: str, settings: Any, project: Project, owner: User, enqueued: list[int]
) -> None:
    settings.JOB_LIMIT_ACTIVE_PER_USER = 0 if setting.endswith("USER") else 100
    settings.JOB_LIMIT_ACTIVE_PER_PROJECT = 0 if setting.endswith("PROJECT") else 100
    _busy(project, owner, 10)

    job = job_create(project=project, user=owner, kind=JobKind.GENERATE)

    assert job.status == JobStatus.QUEUED


def test_every_job_kind_obeys_the_limit(project: Project, owner: User, enqueued: list[int]) -> None:
    _busy(project, owner, 2)

    with pytest.raises(JobLimitReached):
        catalog_model_register(project=project, user=owner, source="local", location="/m", name="m")
    for kind in JobKind:
        with pytest.raises(JobLimitReached):
            job_create(project=project, user=owner, kind=kind)
    assert Job.objects.count() == 2


def test_saving_a_dataset_at_the_limit_keeps_the_upload_to_save_later(
    project: Project, owner: User, tiny_model: Any, enqueued: list[int]
) -> None:
    rows = "".join(f'{{"input": "q{i}", "target": "a{i}"}}\n' for i in range(6))
    staged = dataset_services.dataset_stage_text(project=project, user=owner, text=rows)
    _busy(project, owner, 2)
    data = {
        "action": "save",
        "name": "Tickets",
        "input_field": "input",
        "target_field": "target",
        "seed": "1",
        "train": "0.8",
        "validation": "0.1",
        "test": "0.1",
    }
    url = reverse("dataset_staged", args=[project.slug, staged.token])

    refused = _client(owner).post(url, data)

    assert refused.status_code == 200
    assert "Not saved yet: You already have 2 jobs" in refused.content.decode()
    assert not project.datasets.exists()
    Job.objects.filter(project=project).update(status=JobStatus.SUCCEEDED)

    saved = _client(owner).post(url, data)

    assert saved.status_code == 302
    assert project.datasets.count() == 1
