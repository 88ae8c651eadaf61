"""The application stage end to end on a real worker (Redis + PostgreSQL): a knowledge
index, an application version, a streamed answer from the serving worker through the
playground, a human fallback, and an app evaluation job with and without retrieval.

The index is built with the retrieval core and recorded as a succeeded index job (what
the knowledge base's index job leaves behind); deploying and calling the /v1 endpoint
with the application is covered once the endpoint reads `deployed_app_payload`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from lifecycle_app.models import (
    AppEvalAnswer,
    ApplicationVersion,
    CatalogModel,
    FallbackQuestion,
    Job,
    JobKind,
    JobStatus,
    KnowledgeIndex,
    Project,
)
from lifecycle_app.stages.deploy.services import api_token_create
from tests.integration.app_data import QUESTIONS, build_knowledge_index
from tests.integration.conftest import WorkerProcess, wait_for_job

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TEMPLATE = "Context:\n{context}\n\nQuestion: {input}\nAnswer:"


@pytest.fixture
def knowledge_index(
    live_worker: WorkerProcess,
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    tiny_folder: Path,
    settings: Any,
    tmp_path: Path,
) -> KnowledgeIndex:
    # Documents go where the worker reads them: its own var/ folder.
    settings.VAR_DIR = live_worker.log_path.parent / "var"
    return build_knowledge_index(project, owner, tiny_model, tmp_path / "docs")


def sse(
    client: Client, project: Project, version: ApplicationVersion, question: str
) -> list[dict[str, Any]]:
    response = client.post(
        reverse("app_ask", args=[project.slug]),
        {"version": version.id, "question": question},
        HTTP_ACCEPT="text/event-stream",
    )
    raw = b"".join(response.streaming_content).decode()  # type: ignore[attr-defined]
    return [json.loads(line[6:]) for line in raw.split("\n") if line.startswith("data: ")]


def test_build_ask_fall_back_and_evaluate_an_application(
    live_worker: WorkerProcess,
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    tiny_folder: Path,
    knowledge_index: KnowledgeIndex,
) -> None:
    client = Client()
    client.force_login(owner)
    data = {
        "name": "Office helper",
        "model": f"base:{tiny_model.slug}",
        "template": TEMPLATE,
        "retrieval": "hybrid",
        "top_k": 2,
        "threshold": "",
        "cite": "on",
        "reasoning": "none",
        "fallback_min_score": "",
        "max_new_tokens": 12,
        "note": "",
    }
    response = client.post(reverse("app_list", args=[project.slug]), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    v1 = ApplicationVersion.objects.get()

    # A streamed answer from the serving worker: passages, the exact prompt, deltas, done.
    events = sse(client, project, v1, "When is lunch served?")
    types = [e["type"] for e in events]
    assert types[-1] == "done", events[-3:]
    assert "retrieval" in types and "prompt" in types and "delta" in types
    hits = next(e for e in events if e["type"] == "retrieval")["hits"]
    assert len(hits) == 2 and hits[0]["document_name"] == "lunch.md"
    assert set(hits[0]["scores"]) == {"bm25", "dense"}
    prompt = next(e for e in events if e["type"] == "prompt")["text"]
    assert "[1] (lunch.md) Lunch is served at noon" in prompt and "When is lunch served?" in prompt
    done = events[-1]
    streamed = "".join(e["text"] for e in events if e["type"] == "delta")
    assert done["fallback"] is False and streamed.strip() == done["answer"]
    assert 0 < done["usage"]["completion_tokens"] <= 12

    # A version with a strict fallback rule hands the question to a person.
    detail = reverse("app_detail", args=[project.slug, v1.application_id])
    client.post(detail, {**data, "fallback_min_score": "0.999", "note": "strict"})
    v2 = ApplicationVersion.objects.get(number=2)
    events = sse(client, project, v2, "When is lunch served?")
    assert events[-1]["type"] == "done" and events[-1]["fallback"] is True
    item = FallbackQuestion.objects.get()
    assert item.version == v2 and "below the fallback threshold" in item.reason

    # An app evaluation of both versions, with and without retrieval.
    upload = SimpleUploadedFile(
        "questions.jsonl", "\n".join(json.dumps(q) for q in QUESTIONS).encode()
    )
    client.post(
        reverse("app_evalset_upload", args=[project.slug]), {"name": "Office", "file": upload}
    )
    eval_set = project.app_eval_sets.get()
    response = client.post(
        reverse("app_eval_start", args=[project.slug]),
        {"eval_set": eval_set.id, "versions": [v1.id, v2.id], "k": 2},
    )
    job = Job.objects.get(kind=JobKind.APP_EVALUATE)
    job = wait_for_job(job.id, timeout=180)
    assert job.status == JobStatus.SUCCEEDED, (job.error, job.traceback[-2000:])
    assert job.progress_done == job.progress_total == 3 * 4
    result = job.result
    assert set(result["retrieval"]) == {"bm25", "dense", "hybrid"}
    for scores in result["retrieval"].values():
        assert 0.0 <= scores["mrr"] <= scores["recall_at_k"] <= 1.0
    # BM25 finds each question's document by its words.
    assert result["retrieval"]["bm25"]["recall_at_k"] == 1.0
    first, second = result["versions"]
    assert first["with"]["answered"] == first["without"]["answered"] == 3.0
    assert first["without"]["cited_holds"] is None and first["with"]["cited_holds"] is not None
    assert second["with"]["fallback_rate"] == 1.0 and first["with"]["fallback_rate"] == 0.0
    assert AppEvalAnswer.objects.filter(job=job).count() == 12
    page = client.get(reverse("app_scorecard", args=[project.slug, job.id])).content.decode()
    assert "recall@2" in page and "Office helper v2" in page

    # Deployed, v1 answers the OpenAI-compatible endpoint: the client sends the question
    # only; retrieval, the template and the citations happen in the serving worker.
    client.post(reverse("app_version_deploy", args=[project.slug, v1.id]))
    _, token = api_token_create(project=project, actor=owner, name="it")
    api = Client()
    auth = {"Authorization": f"Bearer {token}"}
    models = api.get("/v1/models", headers=auth).json()
    assert [m["id"] for m in models["data"]] == ["office-helper"]
    question = {"role": "user", "content": "When is lunch served?"}
    body = {"model": "office-helper", "messages": [question], "max_tokens": 12}
    answer = api.post(
        "/v1/chat/completions", json.dumps(body), content_type="application/json", headers=auth
    )
    assert answer.status_code == 200, answer.content
    completion = answer.json()
    assert completion["choices"][0]["message"]["content"] == done["answer"]  # greedy, as v1
    # The cited sources: the passages the answer's [n] markers name (the tiny model's
    # random text may cite none), the same as the playground showed.
    cited = [(c["document_name"], c["position"]) for c in done["citations"]]
    assert [(c["document_name"], c["position"]) for c in completion["sources"]] == cited
    streamed_api = api.post(
        "/v1/chat/completions",
        json.dumps({**body, "stream": True}),
        content_type="application/json",
        headers=auth,
    )
    raw = b"".join(streamed_api.streaming_content).decode()  # type: ignore[attr-defined]
    chunks = [json.loads(x[6:]) for x in raw.split("\n\n") if x.startswith("data: {")]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert raw.rstrip().endswith("data: [DONE]") and text.strip() == done["answer"]
