"""The app on an S3 store (moto's server): uploads published and read back through the
cache, downloads streamed from the store; with the store down, pages still render,
downloads answer 503 and uploads and jobs fail with a message naming the store."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import boto3
import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from lifecycle_app.datasets.models import Dataset
from lifecycle_app.models import Job, JobStatus, Project
from lifecycle_app.stages.prompt.building import split_rows
from lifecycle_app.storage import publish_dir
from tests.factories import JobFactory
from tests.s3server import CREDENTIALS, make_bucket, moto_server
from tests.unit.test_views_datasets import (  # noqa: F401 - fixtures
    SAMPLE,
    body,
    mapping_data,
    sent,
    staged_url,
    storage,
    token_from,
    upload,
    upload_and_save,
)

DOWN = "http://127.0.0.1:9"  # the discard port: nothing listens


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server() as url:
        make_bucket(url, "studio-test")
        yield url


@pytest.fixture
def s3(endpoint: str, settings: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    prefix = os.urandom(6).hex()
    settings.STORAGE_URL = f"s3://studio-test/{prefix}"
    settings.CACHE_DIR = tmp_path / "cache"
    settings.STORAGE_TIMEOUT_S = 2
    return prefix


def _objects(endpoint: str, prefix: str) -> list[str]:
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    found = client.list_objects_v2(Bucket="studio-test", Prefix=prefix + "/")
    return sorted(item["Key"][len(prefix) + 1 :] for item in found.get("Contents", []))


@pytest.fixture
def client(project: Project) -> Client:
    client = Client()
    client.force_login(project.owner)
    return client


@pytest.mark.usefixtures("storage")
def test_an_upload_is_published_read_through_the_cache_and_downloaded_from_the_store(
    client: Client, project: Project, s3: str, endpoint: str
) -> None:
    dataset = upload_and_save(client, project)

    assert _objects(endpoint, s3) == sorted(
        [
            f"datasets/{project.id}/{dataset.stored_name}",
            f"datasets/{project.id}/{dataset.clean_path.name}",
        ]
    )
    assert not dataset.original_path.exists() and not dataset.clean_path.exists()
    assert len(split_rows(dataset, "train")) == dataset.split_counts["train"]
    response = client.get(reverse("dataset_download", args=[project.slug, dataset.id]))
    assert response.status_code == 200
    assert body(response) == SAMPLE.read_bytes()


@pytest.mark.usefixtures("storage")
def test_with_the_store_down_pages_render_downloads_say_503_and_uploads_are_refused(
    client: Client,
    project: Project,
    s3: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dataset = upload_and_save(client, project)
    monkeypatch.setenv("AWS_ENDPOINT_URL", DOWN)
    message = f"The artifact store at s3://studio-test/{s3} is not reachable"

    assert client.get(reverse("dataset_list", args=[project.slug])).status_code == 200
    detail = client.get(reverse("dataset_detail", args=[project.slug, dataset.id]))
    assert detail.status_code == 200
    download = client.get(reverse("dataset_download", args=[project.slug, dataset.id]))
    assert download.status_code == 503
    assert message in download.content.decode()

    token = token_from(upload(client, project), project)
    refused = client.post(staged_url(project, token), mapping_data(name="Second"))
    assert refused.status_code == 200
    assert message in refused.content.decode()
    assert list(Dataset.objects.filter(project=project).values_list("name", flat=True)) == [
        dataset.name
    ]


@pytest.mark.django_db(transaction=True)  # the task closes and reopens connections
def test_a_job_that_meets_a_dead_store_fails_with_its_message_and_publishes_nothing(
    project: Project, owner: User, s3: str, endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers.tasks.base import _run

    monkeypatch.setenv("AWS_ENDPOINT_URL", DOWN)
    job = cast(Job, JobFactory(project=project, created_by=owner))

    def body(job: Job, run: Any) -> None:
        (run.folder / "final").mkdir()
        (run.folder / "final" / "weights.bin").write_bytes(b"x" * 100)
        publish_dir(run.folder / "final")

    _run(SimpleNamespace(request=SimpleNamespace(hostname="w1")), job.id, body)  # type: ignore[arg-type]

    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.error.startswith(f"The artifact store at s3://studio-test/{s3} is not reachable")
    assert _objects(endpoint, s3) == []
