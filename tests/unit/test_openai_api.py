"""/v1/chat/completions and /v1/models: auth, shapes, SSE, errors, the serving log.

The serving worker's stream is replaced at the transport boundary (`serve_stream`) by a
list of events; tests/integration/test_openai_client.py runs the real worker.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.template.loader import render_to_string
from django.test import Client
from django.utils import timezone

from lifecycle_app.models import (
    CatalogModel,
    JobKind,
    JobStatus,
    ModelVariant,
    Project,
    ServingLog,
    VariantKind,
)
from lifecycle_app.stages.deploy.services import api_token_create, variant_deploy
from lifecycle_app.stages.integrate.api.selectors import percentile, serving_stats
from tests.factories import JobFactory

TEMPLATE = {
    "id": 1,
    "name": "t",
    "version": 1,
    "instruction": "Summarize.",
    "example_format": "",
    "body": "{instruction}\n{input}\nSummary:",
    "use_chat_template": False,
    "shot_style": "inline",
}
DONE = {
    "type": "done",
    "answer": "A short summary.",
    "citations": [{"chunk_id": "d1-0", "document_name": "faq.md", "position": 0}],
    "fallback": False,
    "usage": {"prompt_tokens": 12, "completion_tokens": 4},
    "finish_reason": "stop",
}
STREAM: list[dict[str, Any]] = [
    {"type": "start"},
    {"type": "delta", "text": "A short"},
    {"type": "delta", "text": " summary."},
    DONE,
]


class FakeStream:
    """Stands in for the worker: records payloads, yields the scripted events, and says
    whether the web closed the stream (which cancels the worker)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = list(STREAM)
        self.calls: list[dict[str, Any]] = []
        self.closed = False

    def __call__(self, *, model_path: str, payload: dict[str, Any], timeout: float) -> Any:
        self.calls.append({"model_path": model_path, "payload": payload})

        def gen() -> Generator[dict[str, Any]]:
            try:
                yield from self.events
            finally:
                self.closed = True

        return gen()


@pytest.fixture
def worker(monkeypatch: pytest.MonkeyPatch) -> FakeStream:
    fake = FakeStream()
    monkeypatch.setattr("lifecycle_app.stages.integrate.api.views.serve_stream", fake)
    return fake


@pytest.fixture
def deployed(project: Project, owner: User, tiny_model: CatalogModel) -> ModelVariant:
    job = JobFactory.create(
        project=project,
        created_by=owner,
        kind=JobKind.EXPORT,
        status=JobStatus.SUCCEEDED,
        params={"kind": "int8", "model_ref": tiny_model.slug, "template": TEMPLATE},
    )
    variant = ModelVariant.objects.create(
        project=project,
        job=job,
        kind=VariantKind.INT8,
        parent=tiny_model,
        candidate=tiny_model,
        path="/tmp/x",
    )
    return variant_deploy(project=project, variant=variant, actor=owner)


@pytest.fixture
def token(project: Project, owner: User) -> str:
    return api_token_create(project=project, actor=owner, name="app")[1]


def post(body: Any, token: str | None, **extra: Any) -> Any:
    headers: dict[str, Any] = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return Client().post(
        "/v1/chat/completions", data=data, content_type="application/json", **headers, **extra
    )


def body(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "A: Lunch? B: Sure."}]} | extra


def sse(response: Any) -> list[Any]:
    text = b"".join(response.streaming_content).decode()
    assert text.endswith("data: [DONE]\n\n")
    out = []
    for block in text.split("\n\n"):
        if block:
            assert block.startswith("data: ")
            payload = block[len("data: ") :]
            out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


def test_a_completion_has_openai_shape_usage_and_sources(
    deployed: ModelVariant, token: str, worker: FakeStream, project: Project
) -> None:
    response = post(body(deployed.candidate.slug, max_tokens=8, seed=3), token)  # type: ignore[union-attr]

    assert response.status_code == 200, response.content
    data = response.json()
    assert data["object"] == "chat.completion" and data["id"].startswith("chatcmpl-")
    assert data["model"] == deployed.candidate.slug  # type: ignore[union-attr]
    assert data["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "A short summary."},
            "finish_reason": "stop",
        }
    ]
    assert data["usage"] == {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16}
    assert data["sources"] == [{"chunk_id": "d1-0", "document_name": "faq.md", "position": 0}]
    sent = worker.calls[0]
    assert sent["model_path"] == "/tmp/x"
    assert sent["payload"]["template"] == TEMPLATE  # the model's own prompt template
    assert sent["payload"]["max_tokens"] == 8 and sent["payload"]["seed"] == 3
    assert sent["payload"]["messages"] == [{"role": "user", "content": "A: Lunch? B: Sure."}]
    log = ServingLog.objects.get(project=project)
    assert (log.status, log.streamed, log.completion_tokens) == (200, False, 4)
    assert log.ttft_ms is not None and log.latency_ms >= log.ttft_ms


def test_stop_and_max_completion_tokens_reach_the_worker(
    deployed: ModelVariant, token: str, worker: FakeStream
) -> None:
    name = deployed.candidate.slug  # type: ignore[union-attr]
    assert (
        post(body(name, stop="###", max_completion_tokens=5, max_tokens=9), token).status_code
        == 200
    )
    assert post(body(name, stop=["a", "b"], temperature=0.5, top_p=0.9), token).status_code == 200

    first, second = (c["payload"] for c in worker.calls)
    assert (first["stop"], first["max_tokens"]) == (["###"], 5)
    assert (second["stop"], second["temperature"], second["top_p"]) == (["a", "b"], 0.5, 0.9)


def test_streaming_sends_sse_chunks_with_usage_and_sources_last(
    deployed: ModelVariant, token: str, worker: FakeStream, project: Project
) -> None:
    name = deployed.candidate.slug  # type: ignore[union-attr]
    response = post(body(name, stream=True, stream_options={"include_usage": True}), token)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/event-stream")
    chunks = sse(response)
    assert chunks[-1] == "[DONE]"
    assert all(c["object"] == "chat.completion.chunk" for c in chunks[:-1])
    assert len({c["id"] for c in chunks[:-1]}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1] if c["choices"])
    assert text == "A short summary."
    finish = chunks[-3]
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert finish["sources"][0]["document_name"] == "faq.md"
    usage = chunks[-2]
    assert usage["choices"] == [] and usage["usage"]["total_tokens"] == 16
    log = ServingLog.objects.get(project=project)
    assert log.streamed and log.status == 200 and log.completion_tokens == 4


def test_without_include_usage_no_usage_chunk_is_sent(
    deployed: ModelVariant, token: str, worker: FakeStream
) -> None:
    chunks = sse(post(body(deployed.candidate.slug, stream=True), token))  # type: ignore[union-attr]

    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert not any("usage" in c for c in chunks[:-1])


def test_an_error_mid_stream_is_an_openai_error_event(
    deployed: ModelVariant, token: str, worker: FakeStream, project: Project
) -> None:
    worker.events = [
        {"type": "delta", "text": "A"},
        {"type": "error", "status": 500, "message": "boom", "error_type": "server_error"},
    ]
    chunks = sse(post(body(deployed.candidate.slug, stream=True), token))  # type: ignore[union-attr]

    assert chunks[-2] == {
        "error": {"message": "boom", "type": "server_error", "param": None, "code": "server_error"}
    }
    assert ServingLog.objects.get(project=project).error == "server_error"


def test_a_client_that_leaves_early_closes_the_worker_stream(
    deployed: ModelVariant, token: str, worker: FakeStream
) -> None:
    response = post(body(deployed.candidate.slug, stream=True), token)  # type: ignore[union-attr]
    stream = iter(response.streaming_content)
    next(stream)
    assert not worker.closed
    response.close()

    assert worker.closed


@pytest.mark.parametrize("header", [None, "Bearer lcs_not-a-real-token", "Basic abc"])
def test_a_wrong_token_gets_401_in_openai_error_shape(
    deployed: ModelVariant, worker: FakeStream, header: str | None
) -> None:
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    response = post(body("x"), None, **extra)

    assert response.status_code == 401
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "invalid_api_key"
    assert worker.calls == []


def test_an_unknown_model_gets_404_naming_the_served_one(
    deployed: ModelVariant, token: str, worker: FakeStream
) -> None:
    response = post(body("gpt-4o"), token)

    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "model_not_found" and error["param"] == "model"
    assert deployed.candidate.slug in error["message"]  # type: ignore[union-attr]
    assert worker.calls == []


def test_a_body_over_the_limit_gets_413_before_anything_is_read(
    deployed: ModelVariant, token: str, worker: FakeStream, settings: Any
) -> None:
    settings.API_MAX_BODY_BYTES = 1024
    big = body(deployed.candidate.slug, messages=[{"role": "user", "content": "x" * 5000}])  # type: ignore[union-attr]

    response = post(big, "not-even-checked")

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert worker.calls == []


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"temperature": 5}, "temperature"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"n": 2}, "n"),
        ({"tools": [{"type": "function"}]}, "tools"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": "9"}, "max_tokens"),
        ({"bogus_field": 1}, "bogus_field"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
        ({"messages": []}, "messages"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
    ],
)
def test_bad_fields_get_400_naming_the_field(
    deployed: ModelVariant, token: str, worker: FakeStream, extra: dict[str, Any], param: str
) -> None:
    response = post(body(deployed.candidate.slug, **extra), token)  # type: ignore[union-attr]

    assert response.status_code == 400, response.content
    assert response.json()["error"]["param"] == param
    assert worker.calls == []


def test_harmless_openai_fields_are_accepted_and_ignored(
    deployed: ModelVariant, token: str, worker: FakeStream
) -> None:
    extra = {"user": "u1", "presence_penalty": 0, "metadata": {"a": "b"}, "n": 1}
    parts = [{"role": "developer", "content": [{"type": "text", "text": "Be brief."}]}]
    messages = [*parts, {"role": "user", "content": "Hi"}]

    response = post(body(deployed.candidate.slug, messages=messages, **extra), token)  # type: ignore[union-attr]

    assert response.status_code == 200, response.content
    assert worker.calls[0]["payload"]["messages"][0] == {"role": "system", "content": "Be brief."}


def test_bad_json_gets_400(deployed: ModelVariant, token: str, worker: FakeStream) -> None:
    response = post(b"{not json", token)

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_nothing_deployed_gets_409(project: Project, token: str, worker: FakeStream) -> None:
    response = post(body("anything"), token)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "no_deployed_model"


@pytest.mark.parametrize(
    ("status", "kind"),
    [(503, "service_unavailable"), (504, "timeout"), (400, "invalid_request_error")],
)
def test_a_worker_error_before_any_text_keeps_its_status(
    deployed: ModelVariant, token: str, worker: FakeStream, status: int, kind: str, project: Project
) -> None:
    worker.events = [{"type": "error", "status": status, "message": "no", "error_type": kind}]

    for stream in (False, True):
        response = post(body(deployed.candidate.slug, stream=stream), token)  # type: ignore[union-attr]
        assert response.status_code == status
        assert response.json()["error"]["type"] == kind
    assert ServingLog.objects.filter(project=project, status=status).count() == 2


def test_models_lists_the_deployed_model_for_the_token_only(
    deployed: ModelVariant, token: str, owner: User
) -> None:
    client = Client()
    response = client.get("/v1/models", HTTP_AUTHORIZATION=f"Bearer {token}")

    assert response.status_code == 200
    assert [m["id"] for m in response.json()["data"]] == [deployed.candidate.slug]  # type: ignore[union-attr]
    assert response.json()["data"][0]["object"] == "model"
    assert client.get("/v1/models").status_code == 401
    assert client.post("/v1/models", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 405


def test_models_is_empty_when_nothing_is_deployed(project: Project, token: str) -> None:
    response = Client().get("/v1/models", HTTP_AUTHORIZATION=f"Bearer {token}")

    assert response.json() == {"object": "list", "data": []}


def test_serving_stats_give_counts_percentiles_and_errors_per_day(
    project: Project, django_assert_num_queries: Any
) -> None:
    for ms in range(1, 101):
        ServingLog.objects.create(project=project, status=200, latency_ms=ms, ttft_ms=ms // 2)
    ServingLog.objects.create(project=project, status=504, latency_ms=60000)
    old = ServingLog.objects.create(project=project, status=500, latency_ms=5)
    ServingLog.objects.filter(id=old.id).update(created_at=timezone.now() - timedelta(days=2))
    ServingLog.objects.filter(id=old.id)  # two days ago: its own row in the table

    with django_assert_num_queries(1):
        stats = serving_stats(project, days=7)

    today = stats["days"][-1]
    assert len(stats["days"]) == 7
    assert (today["requests"], today["errors"]) == (101, 1)
    assert (today["p50_ms"], today["p95_ms"]) == (51, 96)
    assert stats["days"][-3]["errors"] == 1
    assert stats["total"]["requests"] == 102
    html = render_to_string("integrate/api/monitoring.html", {"stats": stats})
    assert "102 requests" in html and "2 errors" in html


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([5], 95) == 5
    assert percentile([1, 2, 3, 4], 50) == 2
    assert percentile(list(range(1, 21)), 95) == 19


# --- a deployed application answers the API --------------------------------------------


@pytest.fixture
def deployed_app(project: Project, owner: User, tiny_model: CatalogModel, tiny_folder: Any) -> Any:
    from lifecycle_app.stages.integrate.app.models import Application, ApplicationVersion
    from lifecycle_app.stages.integrate.app.services import version_deploy

    app = Application.objects.create(project=project, name="Help desk", created_by=owner)
    version = ApplicationVersion.objects.create(
        application=app,
        number=1,
        candidate_kind="base",
        model=tiny_model,
        model_label="Tiny test model (catalog)",
        template="Context:\n{context}\nQuestion: {input}\nAnswer:",
        retrieval="off",
        top_k=3,
        reasoning="none",
        max_new_tokens=16,
    )
    return version_deploy(version=version, user=owner)


def test_a_deployed_application_answers_with_its_own_model_and_config(
    deployed: ModelVariant, deployed_app: Any, token: str, worker: FakeStream
) -> None:
    listed = Client().get("/v1/models", HTTP_AUTHORIZATION=f"Bearer {token}").json()
    assert [m["id"] for m in listed["data"]] == ["help-desk"]  # the app, not the variant

    response = post(body("help-desk"), token)

    assert response.status_code == 200, response.content
    sent = worker.calls[0]
    assert sent["model_path"] != deployed.path  # the version's model, as in the playground
    app = sent["payload"]["app"]
    assert app["question"] == "A: Lunch? B: Sure."  # the user's text only
    assert app["config"]["template"].startswith("Context:\n{context}")


def test_an_api_question_the_app_could_not_answer_waits_for_review(
    deployed_app: Any, token: str, worker: FakeStream
) -> None:
    from lifecycle_app.stages.integrate.app.models import FallbackQuestion

    worker.events = [
        {"type": "delta", "text": "I don't know."},
        {**DONE, "answer": "I don't know.", "fallback": True, "fallback_reason": "no passage"},
    ]

    response = post(body("help-desk", stream=True), token)
    sse(response)

    item = FallbackQuestion.objects.get()
    assert (item.version_id, item.source, item.question) == (
        deployed_app.id,
        "api",
        "A: Lunch? B: Sure.",
    )


def test_a_deployed_application_whose_model_is_gone_gets_503_naming_it(
    deployed_app: Any, token: str, worker: FakeStream, tiny_model: CatalogModel
) -> None:
    CatalogModel.objects.filter(id=tiny_model.id).update(source="local", location="/gone/model")

    response = post(body("help-desk"), token)

    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "model_unavailable" and "help-desk" in error["message"]
    assert worker.calls == []
