"""Share pages show no dataset names (README, Teams and sharing: "no datasets or downloads"):
a share link shows the work, not the team's data inventory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from lifecycle_app.models import Dataset, Job, JobKind, JobStatus, Project
from lifecycle_app.projects import steps
from lifecycle_app.teams.services import share_link_create
from tests.factories import JobFactory
from tests.unit.test_views_evaluation import THREE, make_evaluation

NAMES = ("Secret customer tickets", "Board minutes 2026")


def _dataset(project: Project, owner: User, name: str) -> Dataset:
    return Dataset.objects.create(
        project=project,
        name=name,
        original_filename=f"{name}.jsonl",
        stored_name=f"{project.id}-{name.lower().replace(' ', '-')}.jsonl",
        format="jsonl",
        sha256="0" * 64,
        input_field="input",
        target_field="target",
        total_rows=10,
        valid_rows=10,
        split_fractions=[0.8, 0.1, 0.1],
        split_counts={"train": 8, "validation": 1, "test": 1},
        created_by=owner,
    )


@pytest.fixture
def shared(project: Project, owner: User, settings: Any, tmp_path: Path) -> str:
    settings.DATASETS_DIR = tmp_path
    first, _ = (_dataset(project, owner, name) for name in NAMES)
    job, _ = make_evaluation(project, owner, THREE)
    job.dataset = first
    job.save(update_fields=["dataset"])
    JobFactory.create(
        project=project,
        created_by=owner,
        kind=JobKind.FINETUNE,
        status=JobStatus.SUCCEEDED,
        dataset=first,
        params={"dataset_id": first.id, "method": "lora"},
    )
    return share_link_create(project=project, actor=owner, lifetime=None).token


def share_urls(token: str) -> list[str]:
    urls = [reverse("share_project", args=[token]), reverse("share_scorecard", args=[token])]
    urls += [reverse("share_jobs", args=[token])]
    for job in Job.objects.all():
        urls.append(reverse("share_job", args=[token, job.id]))
        if job.kind == JobKind.EVALUATE:
            urls.append(reverse("share_evaluation", args=[token, job.id]))
    for stage in steps.STAGES:
        for step in stage.steps:
            urls.append(reverse("share_step", args=[token, stage.key.value, step.slug]))
    return urls


def test_no_share_page_names_a_dataset(shared: str) -> None:
    pages = {url: Client().get(url) for url in share_urls(shared)}
    assert all(r.status_code == 200 for r in pages.values()), {
        u: r.status_code for u, r in pages.items()
    }
    named = [(u, n) for u, r in pages.items() for n in NAMES if n in r.content.decode()]
    assert named == []


def test_a_share_step_shows_the_saved_dataset_by_its_split_sizes_only(
    shared: str, project: Project
) -> None:
    # The fine-tune step shows the last run's dataset: only that one, without its name.
    url = reverse("share_step", args=[shared, "adapt", "fine-tune"])
    page = Client().get(url).content.decode()
    select = page[
        page.index('name="dataset"') : page.index("</select>", page.index('name="dataset"'))
    ]
    assert select.count("<option") - select.count('<option value=""') == 1
    assert "a dataset (8 train · 1 validation · 1 test rows)" in select
    assert not any(name in page for name in NAMES)
