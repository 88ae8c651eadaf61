"""POST /api/projects/<slug>/generate: tokens, limits and JSON errors.

The serving worker is replaced by a stub here (tests/integration/test_deploy_jobs.py
runs the real one); everything before the hand-off is the real code.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from lifecycle_app.models import (
    CatalogModel,
    JobKind,
    JobStatus,
    ModelVariant,
    Project,
    VariantKind,
)
from lifecycle_app.stages.deploy.services import api_token_create, api_token_revoke, variant_deploy
from tests.factories import JobFactory, make_project

Reply = dict[str, Any] | None


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What the web handed to the serving worker; the stub answers with fixed text."""
    calls: list[dict[str, Any]] = []
    reply: dict[str, Any] = {
        "ok": True,
        "text": "A short summary.",
        "prompt_tokens": 12,
        "completion_tokens": 4,
        "finish_reason": "stop",
    }

    def fake(*, variant: ModelVariant, request: Any, timeout: float | None = None) -> Reply:
        calls.append({"variant": variant, "request": request})
        return reply

    monkeypatch.setattr("lifecycle_app.stages.deploy.api.serve_request", fake)
    return calls


def _deployed(project: Project, owner: User, tiny_model: CatalogModel) -> ModelVariant:
    job = JobFactory.create(
        project=project, created_by=owner, kind=JobKind.EXPORT, status=JobStatus.SUCCEEDED
    )
    variant = ModelVariant.objects.create(
        project=project, job=job, kind=VariantKind.INT8, parent=tiny_model, path="/tmp/x"
    )
    return variant_deploy(project=project, variant=variant, actor=owner)


def _post(client: Client, slug: str, body: Any, token: str | None, **extra: Any) -> Any:
    headers: dict[str, Any] = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return client.post(
        reverse("api_generate", args=[slug]),
        data=data,
        content_type="application/json",
        **headers,
        **extra,
    )


BODY = {"messages": [{"role": "user", "content": "Summarize: A: Lunch? B: Sure."}], "max_tokens": 8}


def test_a_token_request_returns_the_generated_text_in_chat_completion_shape(
    project: Project, owner: User, tiny_model: CatalogModel, served: list[dict[str, Any]]
) -> None:
    variant = _deployed(project, owner, tiny_model)
    _, raw = api_token_create(project=project, actor=owner, name="app")

    response = _post(Client(), project.slug, BODY, raw)

    assert response.status_code == 200, response.content
    data = response.json()
    assert data["object"] == "chat.completion"
    assert data["choices"][0]["message"] == {"role": "assistant", "content": "A short summary."}
    assert data["usage"] == {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16}
    assert served[0]["variant"] == variant
    assert served[0]["request"].max_tokens == 8


def test_a_plain_prompt_is_one_user_message(
    project: Project, owner: User, tiny_model: CatalogModel, served: list[dict[str, Any]]
) -> None:
    _deployed(project, owner, tiny_model)
    _, raw = api_token_create(project=project, actor=owner, name="app")

    assert _post(Client(), project.slug, {"prompt": "Hello"}, raw).status_code == 200
    assert served[0]["request"].messages == [{"role": "user", "content": "Hello"}]


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer lcs_not-a-real-token", "Basic abc"])
def test_a_missing_or_unknown_token_gets_401_json(
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    served: list[dict[str, Any]],
    header: str | None,
) -> None:
    _deployed(project, owner, tiny_model)
    extra = {"HTTP_AUTHORIZATION": header} if header else {}

    response = _post(Client(), project.slug, BODY, None, **extra)

    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert served == []


def test_a_revoked_token_gets_401(
    project: Project, owner: User, tiny_model: CatalogModel, served: list[dict[str, Any]]
) -> None:
    _deployed(project, owner, tiny_model)
    token, raw = api_token_create(project=project, actor=owner, name="app")
    assert _post(Client(), project.slug, BODY, raw).status_code == 200

    api_token_revoke(token=token, actor=owner)

    response = _post(Client(), project.slug, BODY, raw)
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


def test_another_projects_token_gets_404(
    project: Project, owner: User, tiny_model: CatalogModel, served: list[dict[str, Any]]
) -> None:
    _deployed(project, owner, tiny_model)
    other = make_project(owner, "Other")
    _, other_raw = api_token_create(project=other, actor=owner, name="other app")

    response = _post(Client(), project.slug, BODY, other_raw)

    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found"
    assert served == []


def test_a_one_megabyte_prompt_gets_a_413_json_error(
    project: Project, owner: User, tiny_model: CatalogModel, served: list[dict[str, Any]]
) -> None:
    _deployed(project, owner, tiny_model)
    _, raw = api_token_create(project=project, actor=owner, name="app")
    body = {"messages": [{"role": "user", "content": "x" * (1024 * 1024)}]}

    response = _post(Client(), project.slug, body, raw)

    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    assert "limit" in response.json()["error"]["message"]
    assert served == []


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        ([1, 2], "JSON object"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "role"),
        ({"prompt": "hi", "max_tokens": 100000}, "max_tokens"),
        ({"prompt": "   "}, "empty"),
    ],
)
def test_a_malformed_request_gets_a_400_json_error(
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    served: list[dict[str, Any]],
    body: Any,
    fragment: str,
) -> None:
    _deployed(project, owner, tiny_model)
    _, raw = api_token_create(project=project, actor=owner, name="app")

    response = _post(Client(), project.slug, body, raw)

    assert response.status_code == 400
    assert fragment in response.json()["error"]["message"]
    assert served == []


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        # 60,000 bytes, under the 64 KB limit: json.loads would raise RecursionError (a 500).
        ('{"prompt": ' + "[" * 30_000 + "]" * 30_000 + "}", "nested too deeply (more than 64"),
        ('{"prompt": "hi", "prompt": "bye"}', 'the key "prompt" appears twice'),
    ],
    ids=["deep", "repeated-key"],
)
def test_a_deep_or_ambiguous_body_gets_a_400_json_error_naming_the_cause(
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    served: list[dict[str, Any]],
    body: str,
    fragment: str,
) -> None:
    _deployed(project, owner, tiny_model)
    _, raw = api_token_create(project=project, actor=owner, name="app")
    assert len(body.encode()) < 64 * 1024

    response = _post(Client(), project.slug, body, raw)

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert fragment in error["message"]
    assert served == []


def test_nothing_deployed_gets_409(
    project: Project, owner: User, served: list[dict[str, Any]]
) -> None:
    _, raw = api_token_create(project=project, actor=owner, name="app")

    response = _post(Client(), project.slug, BODY, raw)

    assert response.status_code == 409
    assert response.json()["error"]["type"] == "no_deployed_model"


def test_no_reply_in_time_gets_a_504_json_error(
    project: Project, owner: User, tiny_model: CatalogModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    _deployed(project, owner, tiny_model)
    _, raw = api_token_create(project=project, actor=owner, name="app")
    monkeypatch.setattr("lifecycle_app.stages.deploy.api.serve_request", lambda **kw: None)

    response = _post(Client(), project.slug, BODY, raw)

    assert response.status_code == 504
    assert response.json()["error"]["type"] == "timeout"


def test_a_worker_error_is_passed_on_as_json(
    project: Project, owner: User, tiny_model: CatalogModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    _deployed(project, owner, tiny_model)
    _, raw = api_token_create(project=project, actor=owner, name="app")
    reply = {"ok": False, "status": 400, "type": "invalid_request_error", "message": "too long"}
    monkeypatch.setattr("lifecycle_app.stages.deploy.api.serve_request", lambda **kw: reply)

    response = _post(Client(), project.slug, BODY, raw)

    assert response.status_code == 400
    assert response.json() == {"error": {"type": "invalid_request_error", "message": "too long"}}


def test_get_is_405_and_sessions_do_not_authenticate(
    project: Project, owner: User, tiny_model: CatalogModel, served: list[dict[str, Any]]
) -> None:
    _deployed(project, owner, tiny_model)
    client = Client()
    client.force_login(owner)

    assert client.get(reverse("api_generate", args=[project.slug])).status_code == 405
    assert _post(client, project.slug, BODY, None).status_code == 401


def test_only_the_tokens_hash_is_stored(project: Project, owner: User) -> None:
    token, raw = api_token_create(project=project, actor=owner, name="app")
    token.refresh_from_db()
    assert raw.startswith("lcs_") and len(raw) > 40
    assert raw not in (token.token_hash, token.prefix, token.name)
    assert raw.startswith(token.prefix)
