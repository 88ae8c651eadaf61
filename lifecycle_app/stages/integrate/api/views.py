"""The OpenAI-compatible endpoint: POST /v1/chat/completions, GET /v1/models.

`openai.OpenAI(base_url="https://host/v1", api_key=<project API token>)` works: the token
names the project, the model is what the project deployed (its id as /v1/models lists
it): a deployed application version first (its own model, template with the retrieved
context, retrieval and reasoning aid, run by the worker; an "I don't know" answer is
recorded for review), else the deployed variant with the prompt template it was trained
and evaluated with. Either way a client sends the user's text only. Errors use OpenAI's shape (protocol.ApiError).

Order of checks: body size (413, nothing read), token (401), JSON and fields (400),
something deployed (409), the model's name (404), then the serving worker (503 when the
queue is unreachable, 504 when no answer comes in time; 400 for a prompt over the
context window, as the worker finds).

Streaming (`"stream": true`) is server-sent events from a StreamingHttpResponse that
reads the worker's event stream in the request's thread (gunicorn's gthread workers: one
thread per open stream, blocked between events; no thread per token; see README,
"OpenAI-compatible API"). The response starts only once the first text (or an error)
came, so an error before any text still gets its HTTP status.
"""

from __future__ import annotations

import json
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from lifecycle_app.common.http import declared_length
from lifecycle_app.projects.models import Project
from lifecycle_app.stages.deploy.api import bearer_token
from lifecycle_app.stages.deploy.models import ApiToken
from lifecycle_app.stages.deploy.services import api_token_touch
from lifecycle_app.stages.deploy.serving import (
    deployed_template,
    deployed_variant,
    serve_stream,
    served_model_id,
)
from lifecycle_app.stages.integrate.api import protocol
from lifecycle_app.stages.integrate.api.protocol import ApiError
from lifecycle_app.stages.integrate.api.services import serving_log_record
from lifecycle_app.stages.integrate.app.candidates import version_model_ref, version_unavailable
from lifecycle_app.stages.integrate.app.models import ApplicationVersion
from lifecycle_app.stages.integrate.app.selectors import deployed_app_payload, deployed_version
from lifecycle_app.stages.integrate.app.services import fallback_record
from workers.ml.data import strict_json

TEXT_EVENTS = ("delta", "done", "error")


@dataclass(frozen=True)
class Served:
    """What answers a project's requests: the name clients use, the weights the serving
    worker loads, when it was deployed, the template of a plain model, and (when an
    application is deployed) the application's config and version."""

    name: str
    model_path: str
    created: int
    template: dict[str, Any] | None
    app: dict[str, Any] | None
    version: ApplicationVersion | None = None


def _served_app(project: Project) -> Served | None:
    """The deployed application version: its model answers through the application's
    template, retrieval and reasoning aid (the worker runs
    `workers.ml.application.answer_question`)."""
    version = deployed_version(project=project)
    payload = deployed_app_payload(project=project)
    if version is None or payload is None:
        return None
    # Resolved by the serving worker on its host; "" when the web can tell it is gone
    # (a 503 names it), else the worker answers 503 with what it could not load.
    path = "" if version_unavailable(version) else version_model_ref(version)
    created = int(version.deployed_at.timestamp()) if version.deployed_at else 0
    return Served(str(payload["name"]), path, created, None, payload, version)


def _served(project: Project) -> Served | None:
    """A deployed application first (it is what the team built around the model), else
    the deployed variant with the prompt template it was trained and evaluated with."""
    app = _served_app(project)
    if app is not None:
        return app
    variant = deployed_variant(project=project)
    if variant is None or not variant.servable:
        return None
    name = served_model_id(variant)
    created = int(variant.deployed_at.timestamp()) if variant.deployed_at else 0
    return Served(name, variant.path, created, deployed_template(variant=variant), None)


def _record_fallback(served: Served, question: str, event: dict[str, Any]) -> None:
    """An API question the application answered with "I don't know" waits for review,
    like the playground's."""
    if served.version is None or event.get("type") != "done" or not event.get("fallback"):
        return
    fallback_record(
        version=served.version,
        question=question,
        reason=str(event.get("fallback_reason") or ""),
        source="api",
    )


def _error(exc: ApiError) -> JsonResponse:
    response = JsonResponse(exc.body(), status=exc.status)
    if exc.status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="lifecycle"'
    return response


def _authenticate(request: HttpRequest) -> ApiToken:
    token = bearer_token(request)
    if token is None:
        raise ApiError(
            401,
            "Incorrect or missing API key: send 'Authorization: Bearer <token>' with a "
            "project API token (owners create them on the project's Optimize and deploy page).",
            code="invalid_api_key",
        )
    return token


def _not_served(served: Served | None) -> Served:
    if served is None:
        raise ApiError(
            409,
            "This project has nothing deployed yet: deploy a variant on its Optimize and "
            "deploy page.",
            code="no_deployed_model",
        )
    return served


@csrf_exempt
def list_models(request: HttpRequest) -> JsonResponse:
    if request.method != "GET":
        return _error(ApiError(405, "Use GET /v1/models.", code="method_not_allowed"))
    try:
        token = _authenticate(request)
    except ApiError as exc:
        return _error(exc)
    served = _served(token.project)
    data = []
    if served is not None:
        data.append(
            {
                "id": served.name,
                "object": "model",
                "created": served.created,
                "owned_by": token.project.slug,
            }
        )
    return JsonResponse({"object": "list", "data": data})


def _read_body(request: HttpRequest) -> Any:
    limit = settings.API_MAX_BODY_BYTES
    length = declared_length(request)
    if length > limit:
        raise ApiError(
            413,
            f"The request body is {length:,} bytes; the limit is {limit:,} bytes.",
            code="request_too_large",
        )
    data = request.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, f"The request body is over {limit:,} bytes.", code="request_too_large")
    try:
        return strict_json.loads(data or b"null")
    except strict_json.JsonRefused as exc:
        raise ApiError(400, f"The body is refused: {exc}.") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "We could not parse the JSON body of your request.") from exc


@csrf_exempt
def chat_completions(request: HttpRequest) -> HttpResponseBase:
    started = time.perf_counter()
    if request.method != "POST":
        return _error(ApiError(405, "Use POST /v1/chat/completions.", code="method_not_allowed"))
    try:
        # The size first: a too-large body is refused before anything is read.
        limit = settings.API_MAX_BODY_BYTES
        if int(request.headers.get("Content-Length") or 0) > limit:
            _read_body(request)
        token = _authenticate(request)
    except ApiError as exc:
        return _error(exc)
    except ValueError:
        return _error(ApiError(400, "Content-Length is not a number."))
    project = token.project
    served: Served | None = None
    try:
        chat = protocol.parse_chat(_read_body(request))
        served = _not_served(_served(project))
        if chat.model != served.name:
            raise ApiError(
                404,
                f"The model '{chat.model}' does not exist here: this project serves "
                f"'{served.name}' (GET /v1/models lists it).",
                param="model",
                code="model_not_found",
            )
        if not served.model_path:
            label = served.version.model_label if served.version else served.name
            raise ApiError(
                503,
                f"The deployed application '{served.name}' cannot answer: "
                f"{version_unavailable(served.version) if served.version else label} "
                "Deploy another version on the application page.",
                type="service_unavailable",
                code="model_unavailable",
            )
    except ApiError as exc:
        _log(project, served, exc.status, started, error=exc.code or exc.type)
        return _error(exc)
    api_token_touch(token=token)
    payload = {**chat.payload(), "template": served.template}
    question = next((m["content"] for m in reversed(chat.messages) if m["role"] == "user"), "")
    if served.app is not None:
        payload["app"] = {"config": served.app["config"], "question": question}
    events = _recording(
        serve_stream(
            model_path=served.model_path, payload=payload, timeout=settings.SERVE_TIMEOUT_S
        ),
        served,
        question,
    )
    # Wait for the first text (or the error) before answering, so errors keep their status.
    first: dict[str, Any] = {"type": "error", "status": 500, "message": "No events."}
    for event in events:
        if event.get("type") in TEXT_EVENTS:
            first = event
            break
    ttft_ms = (time.perf_counter() - started) * 1000 if first["type"] != "error" else None
    if first["type"] == "error":
        events.close()
        failure = _worker_error(first)
        _log(
            project,
            served,
            failure.status,
            started,
            error=failure.code or failure.type,
            stream=chat.stream,
        )
        return _error(failure)
    if chat.stream:
        response = StreamingHttpResponse(
            _sse(chat, served, project, first, events, started, ttft_ms),
            content_type="text/event-stream",
        )
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # a proxy must pass events on at once
        return response
    done = first
    for event in _rest(first, events):
        done = event
    events.close()
    if done["type"] == "error":
        failure = _worker_error(done)
        _log(project, served, failure.status, started, error=failure.code or failure.type)
        return _error(failure)
    body = protocol.completion(protocol.new_id(), served.name, done)
    _log(project, served, 200, started, ttft_ms=ttft_ms, usage=body["usage"])
    return JsonResponse(body)


def _recording(
    events: Generator[dict[str, Any]], served: Served, question: str
) -> Generator[dict[str, Any]]:
    """The worker's events, passed on; a fallback answer is recorded for review."""
    try:
        for event in events:
            _record_fallback(served, question, event)
            yield event
    finally:
        events.close()


def _rest(first: dict[str, Any], events: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """`first` and the events after it, up to and including "done" or "error"."""
    event = first
    while True:
        yield event
        if event["type"] in ("done", "error"):
            return
        event = next(events, {"type": "error", "status": 500, "message": "The stream ended."})


def _worker_error(event: dict[str, Any]) -> ApiError:
    status = int(event.get("status", 500))
    kinds = {400: "invalid_request_error", 503: "service_unavailable", 504: "timeout"}
    return ApiError(
        status,
        str(event.get("message", "The serving worker failed.")),
        type=kinds.get(status, "server_error"),
        code=str(event.get("error_type") or "") or None,
    )


def _sse(
    chat: protocol.ChatRequest,
    served: Served,
    project: Project,
    first: dict[str, Any],
    events: Generator[dict[str, Any]],
    started: float,
    ttft_ms: float | None,
) -> Iterator[bytes]:
    cid, created = protocol.new_id(), int(time.time())

    def line(data: dict[str, Any]) -> bytes:
        return b"data: " + json.dumps(data).encode() + b"\n\n"

    status, error, got_usage = 200, "", {"prompt_tokens": 0, "completion_tokens": 0}
    try:
        yield line(protocol.chunk(cid, created, served.name, {"role": "assistant", "content": ""}))
        for event in _rest(first, events):
            if event["type"] == "delta" and event.get("text"):
                yield line(protocol.chunk(cid, created, served.name, {"content": event["text"]}))
            elif event["type"] == "done":
                got_usage = protocol.usage(event)
                found = protocol.sources(event)
                reason = str(event.get("finish_reason", "stop"))
                yield line(protocol.chunk(cid, created, served.name, {}, reason, sources=found))
                if chat.include_usage:
                    usage_chunk = protocol.chunk(cid, created, served.name, {}, sources=found)
                    usage_chunk["choices"] = []
                    usage_chunk["usage"] = got_usage
                    yield line(usage_chunk)
            elif event["type"] == "error":
                exc = _worker_error(event)
                error = exc.code or exc.type
                yield line(exc.body())  # the openai client raises APIError on it
        yield b"data: [DONE]\n\n"
    except GeneratorExit:
        error = "client_disconnected"
        raise
    finally:
        events.close()  # tells the worker to stop when the client left early
        _log(
            project,
            served,
            status,
            started,
            ttft_ms=ttft_ms,
            usage=got_usage,
            stream=True,
            error=error,
        )


def _log(
    project: Project,
    served: Served | None,
    status: int,
    started: float,
    *,
    ttft_ms: float | None = None,
    usage: dict[str, int] | None = None,
    stream: bool = False,
    error: str = "",
) -> None:
    usage = usage or {}
    serving_log_record(
        project=project,
        model=served.name if served else "",
        status=status,
        latency_ms=(time.perf_counter() - started) * 1000,
        ttft_ms=ttft_ms,
        prompt_tokens=int(usage.get("prompt_tokens", 0)),
        completion_tokens=int(usage.get("completion_tokens", 0)),
        streamed=stream,
        error=error,
    )
