"""The real `openai` package against the OpenAI-compatible endpoint: a live HTTP server
started by the test (pytest-django's live_server, a threaded WSGI server on a free
port), the real serve worker on Redis + PostgreSQL, the tiny model deployed."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import openai
import pytest
from django.contrib.auth.models import User
from openai.types.chat import ChatCompletionMessageParam

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
from tests.factories import JobFactory
from tests.integration.conftest import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TEMPLATE = {
    "id": 1,
    "name": "summary",
    "version": 1,
    "instruction": "Summarize the dialogue.",
    "example_format": "",
    "body": "{instruction}\n\n{input}\nSummary:",
    "use_chat_template": True,
    "shot_style": "chat",
}
QUESTION: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "A: Lunch at noon? B: Sure, see you there."}
]


@pytest.fixture
def deployed(
    live_worker: WorkerProcess,
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    tiny_folder: Path,
) -> tuple[str, str]:
    """The tiny model deployed as the project's served model; (model id, API token)."""
    job = JobFactory.create(
        project=project,
        created_by=owner,
        kind=JobKind.EXPORT,
        status=JobStatus.SUCCEEDED,
        params={"kind": "safetensors", "model_ref": tiny_model.slug, "template": TEMPLATE},
    )
    variant = ModelVariant.objects.create(
        project=project,
        job=job,
        kind=VariantKind.SAFETENSORS,
        parent=tiny_model,
        candidate=tiny_model,
        path=str(tiny_folder),
    )
    variant_deploy(project=project, variant=variant, actor=owner)
    _, raw = api_token_create(project=project, actor=owner, name="client")
    return tiny_model.slug, raw


def client(live_server: Any, token: str) -> openai.OpenAI:
    # Used as a context manager: an open keep-alive connection would hold a server thread,
    # and its database session, past the test.
    return openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=token, max_retries=0, timeout=60)


def test_the_openai_client_gets_completions_streamed_and_not(
    live_server: Any, deployed: tuple[str, str], project: Project
) -> None:
    model, token = deployed
    with client(live_server, token) as api:
        _completions(api, model, project)


def _completions(api: openai.OpenAI, model: str, project: Project) -> None:
    assert [m.id for m in api.models.list()] == [model]
    whole = api.chat.completions.create(
        model=model,
        messages=QUESTION,
        max_tokens=6,
        seed=1,
    )
    assert whole.object == "chat.completion"
    assert whole.usage is not None and whole.usage.completion_tokens == 6
    assert whole.choices[0].finish_reason == "length"
    assert whole.model_extra is not None and whole.model_extra["sources"] == []

    chunks = list(
        api.chat.completions.create(
            model=model,
            messages=QUESTION,
            max_tokens=6,
            seed=1,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) >= 2
    assert text == whole.choices[0].message.content  # greedy: the same answer either way
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finish] == ["length"]

    stopped = api.chat.completions.create(
        model=model,
        messages=QUESTION,
        max_tokens=6,
        seed=1,
        stop=[text[2:5]],
    )
    assert stopped.choices[0].message.content == text[: text.index(text[2:5])]
    assert stopped.choices[0].finish_reason == "stop"

    logs = list(ServingLog.objects.filter(project=project).order_by("id"))
    assert [(log.status, log.streamed) for log in logs] == [(200, False), (200, True), (200, False)]
    assert all(log.ttft_ms is not None and 0 < log.ttft_ms <= log.latency_ms for log in logs)


def test_errors_reach_the_client_as_openai_errors(
    live_server: Any, deployed: tuple[str, str], settings: Any
) -> None:
    model, token = deployed

    with pytest.raises(openai.AuthenticationError) as auth, client(live_server, "lcs_wrong") as bad:
        bad.chat.completions.create(model=model, messages=QUESTION)
    assert auth.value.status_code == 401
    assert auth.value.code == "invalid_api_key"

    with client(live_server, token) as api:
        with pytest.raises(openai.NotFoundError) as missing:
            api.chat.completions.create(model="gpt-4o", messages=QUESTION)
        assert missing.value.code == "model_not_found" and model in missing.value.message

        with pytest.raises(openai.BadRequestError) as wrong:
            api.chat.completions.create(
                model=model,
                messages=QUESTION,
                temperature=7,
            )
        assert wrong.value.param == "temperature"  # type: ignore[attr-defined]

        huge: list[ChatCompletionMessageParam] = [
            {"role": "user", "content": "x" * (settings.API_MAX_BODY_BYTES + 10)}
        ]
        with pytest.raises(openai.APIStatusError) as too_large:
            api.chat.completions.create(model=model, messages=huge)
        assert too_large.value.status_code == 413

    # The raw error body is OpenAI's shape.
    request = urllib.request.Request(
        f"{live_server.url}/v1/chat/completions",
        data=json.dumps({"model": "nope", "messages": QUESTION}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as raw:
        urllib.request.urlopen(request, timeout=30)
    assert raw.value.code == 404
    assert set(json.loads(raw.value.read())["error"]) == {"message", "type", "param", "code"}
