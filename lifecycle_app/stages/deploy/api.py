"""The generation API: POST /api/projects/<slug>/generate, JSON in and out.

Authenticated by a per-project API token (`Authorization: Bearer lcs_...`), never by a
session or a cookie (so no CSRF). Answers in the OpenAI chat-completions shape; errors
are JSON too: {"error": {"type", "message"}}.

Order of checks: body size (413, nothing read), token (401: missing, unknown or
revoked), project (404: unknown, or not the token's), JSON (400; parsed strictly: a repeated
key or nesting over strict_json.MAX_DEPTH levels is refused by name) and fields (400), a deployed
model (409), then the serving worker (504 on timeout, 503 when unreachable).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from pydantic import ValidationError

from lifecycle_app.common.http import declared_length
from lifecycle_app.stages.deploy.models import ApiToken
from lifecycle_app.stages.deploy.services import api_token_touch, hash_token
from lifecycle_app.stages.deploy.serving import ServingUnavailable, deployed_variant, serve_request
from workers.ml.data import strict_json
from workers.ml.params import ServeRequest


def _error(status: int, kind: str, message: str, **headers: str) -> JsonResponse:
    response = JsonResponse({"error": {"type": kind, "message": message}}, status=status)
    for name, value in headers.items():
        response[name] = value
    return response


def bearer_token(request: HttpRequest) -> ApiToken | None:
    """The active API token the request's `Authorization: Bearer` header names, if any."""
    header = request.headers.get("Authorization", "")
    scheme, _, raw = header.partition(" ")
    raw = raw.strip()
    if scheme.lower() != "bearer" or not raw or len(raw) > 200:
        return None
    return (
        ApiToken.objects.select_related("project")
        .filter(token_hash=hash_token(raw), revoked_at__isnull=True)
        .first()
    )


def _parse(body: dict[str, Any]) -> ServeRequest:
    fields = {k: body[k] for k in ("messages", "max_tokens", "temperature", "seed") if k in body}
    if "messages" not in fields and isinstance(body.get("prompt"), str):
        fields["messages"] = [{"role": "user", "content": body["prompt"]}]
    return ServeRequest(**fields)


@csrf_exempt
@require_POST
def generate(request: HttpRequest, slug: str) -> JsonResponse:
    limit = settings.API_MAX_BODY_BYTES
    length = declared_length(request)
    if length > limit:
        return _error(
            413,
            "request_too_large",
            f"The request body is {length:,} bytes; the limit is {limit:,} bytes. "
            "Send a shorter prompt.",
        )
    token = bearer_token(request)
    if token is None:
        return _error(
            401,
            "authentication_error",
            "Send a valid API token: 'Authorization: Bearer <token>'. Owners create tokens "
            "on the project's Optimize and deploy page.",
            **{"WWW-Authenticate": 'Bearer realm="lifecycle"'},
        )
    if token.project.slug != slug:
        return _error(404, "not_found", "No such project for this token.")
    body_bytes = request.read(limit + 1)
    if len(body_bytes) > limit:
        return _error(413, "request_too_large", f"The request body is over {limit:,} bytes.")
    try:
        body = strict_json.loads(body_bytes or b"null")
    except strict_json.JsonRefused as exc:
        return _error(400, "invalid_request_error", f"The body is refused: {exc}.")
    except (ValueError, UnicodeDecodeError):
        return _error(400, "invalid_request_error", "The body is not valid JSON.")
    if not isinstance(body, dict):
        return _error(
            400,
            "invalid_request_error",
            'Send a JSON object: {"messages": [{"role": "user", "content": "..."}]} or '
            '{"prompt": "..."}.',
        )
    try:
        parsed = _parse(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = str(first.get("msg", "invalid"))
        return _error(400, "invalid_request_error", f"{where}: {message}" if where else message)
    project = token.project
    variant = deployed_variant(project=project)
    if variant is None:
        return _error(
            409,
            "no_deployed_model",
            "This project has no deployed model yet: deploy a variant on its Optimize and "
            "deploy page.",
        )
    api_token_touch(token=token)
    started = time.time()
    try:
        reply = serve_request(variant=variant, request=parsed)
    except ServingUnavailable:
        return _error(
            503, "service_unavailable", "The serving queue could not be reached; try again."
        )
    if reply is None:
        return _error(
            504,
            "timeout",
            f"No answer from the serving worker within {settings.SERVE_TIMEOUT_S} s. Is a "
            "worker running on the 'serve' queue? Try fewer max_tokens.",
        )
    if not reply.get("ok"):
        return _error(int(reply.get("status", 500)), str(reply["type"]), str(reply["message"]))
    model_name = variant.candidate.slug if variant.candidate else f"variant-{variant.id}"
    return JsonResponse(
        {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(started),
            "model": model_name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply["text"]},
                    "finish_reason": reply["finish_reason"],
                }
            ],
            "usage": {
                "prompt_tokens": reply["prompt_tokens"],
                "completion_tokens": reply["completion_tokens"],
                "total_tokens": int(reply["prompt_tokens"]) + int(reply["completion_tokens"]),
            },
        }
    )
