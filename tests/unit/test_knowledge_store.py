"""The knowledge base on an S3 store (moto's server): documents and index folders live in
the store, never only on the host that wrote them; the web searches an index another host
built, through its own cache."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from django.test import Client
from django.urls import reverse

from lifecycle_app.catalog.models import CatalogModel
from lifecycle_app.models import KnowledgeDocument, KnowledgeIndex, Project
from lifecycle_app.stages.integrate.app.knowledge import index_location
from lifecycle_app.stages.integrate.knowledge.files import document_local
from lifecycle_app.stages.integrate.knowledge.services import knowledge_document_remove
from lifecycle_app.storage import publish_dir
from tests.s3server import CREDENTIALS, make_bucket, moto_server
from tests.tiny_embedder import build_tiny_embedder
from tests.unit.test_knowledge_views import add, ready_index
from workers.ml.retrieval import Chunk, build_index, load_embedder


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server() as url:
        make_bucket(url, "studio-test")
        yield url


@pytest.fixture
def s3(endpoint: str, settings: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    settings.VAR_DIR = tmp_path / "var"
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


def test_documents_and_indexes_live_in_the_store(
    s3: str,
    endpoint: str,
    project: Project,
    tiny_model: CatalogModel,
    settings: Any,
    tmp_path: Path,
    enqueued: list[int],
    django_capture_on_commit_callbacks: Any,
    search_in_process: list[list[object]],
) -> None:
    doc = add(project, "refunds.md", "Refunds are paid within 14 days.")
    other = add(project, "kettle.md", "The kettle boils water.")

    key = f"knowledge/{project.id}/{doc.stored_name}"
    assert key in _objects(endpoint, s3)
    assert not doc.path.exists()  # the web's own copy went once published
    assert document_local(doc).read_text() == "Refunds are paid within 14 days."

    # A worker builds the index under its var folder and publishes it; the row holds the key.
    texts = {d.id: t for d, t in ((doc, "Refunds are paid within 14 days."),
                                   (other, "The kettle boils water."))}  # fmt: skip
    embedder_dir = build_tiny_embedder(tmp_path / "emb", " ".join(texts.values()))
    built = Path(settings.VAR_DIR) / "jobs" / "9" / "attempt-1" / "index"
    chunks = [Chunk(f"{d}-0", d, "refunds.md" if d == doc.id else "kettle.md", 0, t)
              for d, t in texts.items()]  # fmt: skip
    build_index(chunks, built, load_embedder(str(embedder_dir)))
    folder = publish_dir(built)
    assert not Path(folder).is_absolute()
    shutil.rmtree(Path(settings.VAR_DIR) / "jobs")  # that host's disk is not this one's
    index = ready_index(project, [doc, other], tiny_model)
    KnowledgeIndex.objects.filter(id=index.id).update(folder=folder, embedder=str(embedder_dir))

    location = index_location(project=project)
    assert location is not None and location.folder == folder  # a key the worker fetches
    client = Client()
    client.force_login(project.owner)
    page = client.get(reverse("knowledge_search", args=[project.slug]), {"q": "refunds"})
    hits = page.content.decode().split('data-testid="hits-bm25"')[1].split("</div>")[0]
    assert "refunds.md" in hits

    with django_capture_on_commit_callbacks(execute=True):
        knowledge_document_remove(
            document=KnowledgeDocument.objects.get(id=other.id), user=project.owner
        )
    assert f"knowledge/{project.id}/{other.stored_name}" not in _objects(endpoint, s3)
