"""The Knowledge base page: upload (refusals store nothing), remove (the index follows),
index builds through the job engine, the staleness notice, the test search, permissions."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from lifecycle_app.models import (
    CatalogModel,
    IndexStatus,
    Job,
    JobKind,
    KnowledgeDocument,
    KnowledgeIndex,
    Project,
)
from tests.tiny_embedder import build_tiny_embedder
from tests.unit.test_retrieval_documents import text_pdf
from workers.ml.retrieval import Chunk, build_index, load_embedder


@pytest.fixture(autouse=True)
def storage(settings: Any, tmp_path: Path) -> Path:
    settings.VAR_DIR = tmp_path / "var"
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path / "uploads")
    (tmp_path / "uploads").mkdir()
    return tmp_path


@pytest.fixture
def client(project: Project) -> Client:
    client = Client()
    client.force_login(project.owner)
    return client


def text_of(response: Any) -> str:
    return html.unescape(response.content.decode()).replace("\xa0", " ")


def url(name: str, project: Project, *args: Any) -> str:
    return reverse(name, args=[project.slug, *args])


def upload(client: Client, project: Project, filename: str, data: bytes, **extra: str) -> Any:
    return client.post(
        url("knowledge_upload", project), {"file": SimpleUploadedFile(filename, data), **extra}
    )


def stored_files(tmp_path: Path) -> list[Path]:
    return [p for p in tmp_path.rglob("*") if p.is_file()]


def add(project: Project, name: str, text: str) -> KnowledgeDocument:
    from lifecycle_app.stages.integrate.knowledge.services import knowledge_document_upload

    path = Path("/tmp") / f"kb-{project.id}-{name}"
    path.write_text(text)
    return knowledge_document_upload(project=project, user=project.owner, path=path, filename=name)


def test_the_page_explains_an_empty_knowledge_base(client: Client, project: Project) -> None:
    response = client.get(url("knowledge_base", project))
    assert response.status_code == 200
    assert "No documents yet." in text_of(response)
    assert "Upload documents, then build the index." in text_of(response)


def test_outsiders_get_404_and_wrong_methods_405(
    client: Client, project: Project, outsider: User
) -> None:
    assert client.post(url("knowledge_base", project)).status_code == 405
    assert client.get(url("knowledge_index", project)).status_code == 405
    other = Client()
    other.force_login(outsider)
    for name in ("knowledge_base", "knowledge_search", "knowledge_index_status"):
        assert other.get(url(name, project)).status_code == 404
    assert upload(other, project, "a.txt", b"hello").status_code == 404


def test_viewers_read_but_cannot_change(project: Project, teammate: User) -> None:
    add(project, "a.md", "Refunds take 14 days.")
    viewer = Client()
    viewer.force_login(teammate)
    page = text_of(viewer.get(url("knowledge_base", project)))
    assert "a.md" in page and "Viewers cannot change the knowledge base." in page
    assert "Remove" not in page.split("<h2>Index</h2>")[0].split("<thead>")[1]
    assert upload(viewer, project, "b.txt", b"text").status_code == 403
    doc = KnowledgeDocument.objects.get()
    assert viewer.post(url("knowledge_remove", project, doc.id)).status_code == 403
    assert viewer.post(url("knowledge_index", project), {}).status_code == 403
    assert KnowledgeDocument.objects.count() == 1


def test_an_upload_is_stored_with_its_size_and_kind(
    client: Client, project: Project, tmp_path: Path
) -> None:
    response = upload(client, project, "Returns.md", b"# Returns\n\nWithin 30 days.")
    assert response.status_code == 302
    doc = KnowledgeDocument.objects.get()
    assert (doc.name, doc.kind, doc.size_bytes, doc.created_by) == (
        "Returns.md", "markdown", 26, project.owner,
    )  # fmt: skip
    assert doc.path.read_bytes() == b"# Returns\n\nWithin 30 days."
    assert doc.path.is_relative_to(tmp_path / "var" / "knowledge" / str(project.id))
    page = text_of(client.get(url("knowledge_base", project)))
    assert "Returns.md" in page and "26 bytes" in page and "Build the index" in page


@pytest.mark.parametrize(
    ("filename", "data", "message"),
    [
        ("latin.txt", "Caf\u00e9\n".encode("latin-1"), "Line 1 is not valid UTF-8: byte 0xE9"),
        ("empty.md", b"", "is empty (0 bytes)"),
        ("bin.txt", bytes(range(256)) * 4, "binary file"),
        ("bad.pdf", b"%PDF-1.4\n\x93garbage", "could not be read as a PDF"),
        ("rows.jsonl", b'{"body": "x"}\n', "Line 1: no 'text' field"),
        ("page.html", b"<script>x()</script>", "holds no text"),
        ("sheet.xlsx", b"PK\x03\x04", "is not a supported document"),
    ],
)
def test_a_refused_upload_names_the_problem_and_stores_nothing(
    client: Client, project: Project, tmp_path: Path, filename: str, data: bytes, message: str
) -> None:
    response = upload(client, project, filename, data)
    assert response.status_code == 200
    page = text_of(response)
    assert "This file was not stored." in page and message in page
    assert KnowledgeDocument.objects.count() == 0
    assert stored_files(tmp_path) == []  # neither stored nor left in the upload folder


def test_the_same_content_twice_is_refused(client: Client, project: Project) -> None:
    upload(client, project, "a.txt", b"Refunds take 14 days.")
    page = text_of(upload(client, project, "copy.txt", b"Refunds take 14 days."))
    assert "has the same content as 'a.txt'" in page
    assert KnowledgeDocument.objects.count() == 1


def test_an_upload_over_the_size_limit_is_refused(
    client: Client, project: Project, settings: Any, tmp_path: Path
) -> None:
    settings.DATASET_MAX_BYTES = 1024
    page = text_of(upload(client, project, "big.txt", b"word " * 20_000))
    assert "larger than the 1.0 KB limit and was not stored" in page
    assert KnowledgeDocument.objects.count() == 0 and stored_files(tmp_path) == []


def test_building_the_index_starts_an_index_job(
    client: Client,
    project: Project,
    tiny_model: CatalogModel,
    enqueued: list[int],
    django_capture_on_commit_callbacks: Any,
) -> None:
    add(project, "a.md", "Refunds take 14 days.")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            url("knowledge_index", project),
            {"tokenizer_model": tiny_model.id, "chunk_size": 64, "chunk_overlap": 8},
        )
    assert response.status_code == 302
    index = KnowledgeIndex.objects.get()
    job = Job.objects.get()
    assert index.job == job and job.kind == JobKind.INDEX and job.base_model == tiny_model
    assert (index.chunk_size, index.chunk_overlap, index.status) == (64, 8, "building")
    assert job.params["document_ids"] == index.document_ids and enqueued == [job.id]
    status = client.get(url("knowledge_index_status", project), headers={"HX-Request": "true"})
    fragment = text_of(status)
    assert 'hx-trigger="every 1s"' in fragment and f"#{job.id}" in fragment
    assert "<html" not in fragment


def test_an_overlap_not_below_the_size_is_refused(
    client: Client, project: Project, tiny_model: CatalogModel, enqueued: list[int]
) -> None:
    add(project, "a.md", "Refunds take 14 days.")
    response = client.post(
        url("knowledge_index", project),
        {"tokenizer_model": tiny_model.id, "chunk_size": 32, "chunk_overlap": 32},
    )
    assert "The overlap must be smaller than the chunk size." in text_of(response)
    assert not Job.objects.exists() and not KnowledgeIndex.objects.exists()


def ready_index(
    project: Project, docs: list[KnowledgeDocument], model: CatalogModel
) -> KnowledgeIndex:
    return KnowledgeIndex.objects.create(
        project=project, status=IndexStatus.READY, chunk_size=64, chunk_overlap=8,
        tokenizer_model=model, tokenizer_name=model.name, document_ids=[d.id for d in docs],
        chunk_count=len(docs), embedder_name="tiny",
    )  # fmt: skip


def test_adding_a_document_marks_the_index_stale(
    client: Client, project: Project, tiny_model: CatalogModel
) -> None:
    first = add(project, "a.md", "Refunds take 14 days.")
    ready_index(project, [first], tiny_model)
    assert "documents changed" not in text_of(client.get(url("knowledge_base", project)))
    add(project, "b.md", "Shipping is free.")
    page = text_of(client.get(url("knowledge_base", project)))
    assert "The documents changed since this index was built." in page and "Re-index" in page


def test_removing_a_document_asks_then_reindexes_without_it(
    client: Client,
    project: Project,
    tiny_model: CatalogModel,
    enqueued: list[int],
    django_capture_on_commit_callbacks: Any,
) -> None:
    first = add(project, "a.md", "Refunds take 14 days.")
    second = add(project, "b.md", "Shipping is free.")
    ready_index(project, [first, second], tiny_model)
    confirm = client.get(url("knowledge_remove", project, first.id))
    assert "Remove a.md?" in text_of(confirm)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url("knowledge_remove", project, first.id), follow=True)
    assert "Removed a.md. The index is being rebuilt without it." in text_of(response)
    assert not first.path.exists() and list(KnowledgeDocument.objects.all()) == [second]
    rebuild = KnowledgeIndex.objects.first()
    assert rebuild is not None and rebuild.status == "building"
    assert rebuild.document_ids == [second.id] and rebuild.chunk_size == 64
    assert enqueued == [rebuild.job_id]


def test_removing_the_last_document_retires_the_index(
    client: Client, project: Project, tiny_model: CatalogModel, enqueued: list[int]
) -> None:
    only = add(project, "a.md", "Refunds take 14 days.")
    index = ready_index(project, [only], tiny_model)
    client.post(url("knowledge_remove", project, only.id))
    index.refresh_from_db()
    assert index.status == "retired" and enqueued == []
    assert "No documents yet." in text_of(client.get(url("knowledge_base", project)))


def test_another_projects_document_is_404(client: Client, project: Project, owner: User) -> None:
    from tests.factories import make_project

    other = make_project(owner, name="Other")
    doc = add(other, "a.md", "Secret.")
    assert client.post(url("knowledge_remove", project, doc.id)).status_code == 404
    assert KnowledgeDocument.objects.filter(id=doc.id).exists()


def test_search_shows_top_hits_per_retriever(
    client: Client,
    project: Project,
    tiny_model: CatalogModel,
    settings: Any,
    tmp_path: Path,
    django_assert_max_num_queries: Any,
    search_in_process: list[list[object]],
) -> None:
    texts = {
        "refunds.md": "Refunds are paid within 14 days.",
        "kettle.md": "The kettle boils water.",
    }
    docs = [add(project, name, text) for name, text in texts.items()]
    embedder_dir = build_tiny_embedder(tmp_path / "emb", " ".join(texts.values()))
    chunks = [Chunk(f"{d.id}-0", d.id, d.name, 0, texts[d.name]) for d in docs]
    build_index(chunks, tmp_path / "index", load_embedder(str(embedder_dir)))
    index = ready_index(project, docs, tiny_model)
    KnowledgeIndex.objects.filter(id=index.id).update(
        folder=str(tmp_path / "index"), embedder=str(embedder_dir)
    )
    response = client.get(
        url("knowledge_search", project), {"q": "how long do refunds take"},
        headers={"HX-Request": "true"},
    )  # fmt: skip
    fragment = text_of(response)
    assert 'id="search-results"' in fragment and "<html" not in fragment
    for mode in ("bm25", "dense", "hybrid"):
        assert f'data-testid="hits-{mode}"' in fragment
    bm25 = fragment.split('data-testid="hits-bm25"')[1].split("</div>")[0]
    assert "refunds.md" in bm25 and "kettle.md" not in bm25  # BM25 needs a shared word
    assert "RRF" in fragment and "cosine" in fragment
    # A document removed since the build is left out of the results.
    KnowledgeDocument.objects.filter(name="refunds.md").delete()
    fragment = text_of(client.get(url("knowledge_search", project), {"q": "refunds"}))
    assert "refunds.md" not in fragment.split('id="search-results"')[1]
    with django_assert_max_num_queries(12):
        assert client.get(url("knowledge_base", project)).status_code == 200
    # The serving worker ran it, with the index folder and embedder of the current build.
    assert search_in_process[0][:3] == [
        str(tmp_path / "index"),
        str(embedder_dir),
        "how long do refunds take",
    ]


def test_a_search_the_serving_worker_does_not_answer_says_so(
    client: Client, project: Project, tiny_model: CatalogModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lifecycle_app.stages.deploy import serving

    doc = add(project, "refunds.md", "Refunds are paid within 14 days.")
    ready_index(project, [doc], tiny_model)
    monkeypatch.setattr(serving, "serve_call", lambda *args, **kwargs: None)
    fragment = text_of(client.get(url("knowledge_search", project), {"q": "refunds"}))
    assert 'data-testid="search-error"' in fragment and "did not answer" in fragment
    assert 'data-testid="hits-bm25"' not in fragment


def test_a_pdf_with_text_is_accepted(client: Client, project: Project) -> None:
    assert upload(client, project, "policy.pdf", text_pdf("Refunds in 14 days.")).status_code == 302
    doc = KnowledgeDocument.objects.get()
    assert doc.kind == "pdf" and doc.characters == len("Refunds in 14 days.")


def test_a_failed_index_build_runs_again_over_the_current_documents(
    client: Client, project: Project, tiny_model: CatalogModel, enqueued: list[int]
) -> None:
    from lifecycle_app.stages.integrate.knowledge.services import knowledge_index_start

    first = add(project, "a.md", "Refunds take 14 days.")
    index = knowledge_index_start(
        project=project, user=project.owner, tokenizer_model=tiny_model, chunk_size=40,
        chunk_overlap=4,
    )  # fmt: skip
    assert index.job is not None
    Job.objects.filter(id=index.job.id).update(status="failed", error="boom")
    second = add(project, "b.md", "Shipping is free.")
    response = client.post(reverse("job_run_again", args=[project.slug, index.job.id]))
    assert response.status_code == 302
    again = KnowledgeIndex.objects.first()
    assert again is not None and again.id != index.id and again.job is not None
    assert (again.chunk_size, again.chunk_overlap) == (40, 4)
    assert again.document_ids == [first.id, second.id]
    assert response["Location"].endswith(f"/jobs/{again.job.id}/")
