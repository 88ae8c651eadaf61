"""The OpenAI chat-completions wire format: request parsing, response and chunk shapes,
errors. No views and no database here (the views in views.py use it).

Request fields honoured: model, messages, max_tokens / max_completion_tokens, temperature,
top_p, stop (a string or up to 4), seed, n (1 only), stream, stream_options.include_usage.
Fields that change nothing about one text answer are accepted and ignored as OpenAI does
(user, metadata, store, zero penalties...); fields asking for what this server cannot do
(tools, logprobs, n > 1, a JSON response format) are refused with 400 naming the field,
and a field OpenAI does not know either is refused as OpenAI refuses it.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from workers.ml.params import MAX_SERVE_TOKENS
from workers.ml.serving import MAX_STOP_STRINGS

DEFAULT_MAX_TOKENS = 256
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
# Accepted and ignored: they do not change what one text answer is.
IGNORED = {
    "user",
    "metadata",
    "store",
    "service_tier",
    "parallel_tool_calls",
    "logit_bias",
    "prediction",
    "reasoning_effort",
    "modalities",
    "safety_identifier",
    "prompt_cache_key",
    "top_logprobs",
    "web_search_options",
    "verbosity",
}
# Known to OpenAI, not served here (unless harmless, checked one by one below).
UNSUPPORTED = {
    "tools",
    "tool_choice",
    "functions",
    "function_call",
    "audio",
    "response_format",
    "logprobs",
    "frequency_penalty",
    "presence_penalty",
}
KNOWN = {
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "seed",
    "n",
    "stream",
    "stream_options",
}


class ApiError(Exception):
    """An error answered in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = (
            status,
            message,
            type,
            param,
            code,
        )

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


@dataclass
class ChatRequest:
    model: str
    messages: list[dict[str, str]]
    max_tokens: int
    temperature: float
    top_p: float
    stop: list[str]
    seed: int
    stream: bool
    include_usage: bool
    extra: dict[str, Any] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        """The fields of `workers.ml.serving.ChatPayload` this request sets."""
        return {
            "messages": self.messages,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "stop": self.stop,
            "seed": self.seed,
        }


def _bad(message: str, param: str | None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


def _number(body: dict[str, Any], name: str, low: float, high: float, default: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(f"'{name}' must be a number.", name, "invalid_type")
    if not low <= value <= high:
        raise _bad(f"'{name}' must be between {low:g} and {high:g}; got {value}.", name)
    return float(value)


def _integer(body: dict[str, Any], name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"'{name}' must be an integer.", name, "invalid_type")
    if not low <= value <= high:
        raise _bad(f"'{name}' must be between {low} and {high}; got {value}.", name)
    return value


def _content(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # content parts: text only
        texts = []
        for part in value:
            if not (isinstance(part, dict) and part.get("type") == "text"):
                raise _bad(f"{where}: only text content parts are supported.", where)
            if not isinstance(part.get("text"), str):
                raise _bad(f"{where}: a text part needs a string 'text'.", where)
            texts.append(part["text"])
        return "".join(texts)
    raise _bad(f"{where}: 'content' must be a string or a list of text parts.", where)


def _messages(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise _bad("'messages' must be a non-empty list.", "messages")
    if len(value) > 64:
        raise _bad("At most 64 messages.", "messages")
    out = []
    for i, m in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise _bad(f"{where} must be an object.", where)
        role = ROLES.get(str(m.get("role")))
        if role is None:
            raise _bad(
                f"{where}.role must be system, developer, user or assistant; "
                f"got {m.get('role')!r}.",
                f"{where}.role",
            )
        out.append({"role": role, "content": _content(m.get("content"), f"{where}.content")})
    if not any(m["role"] == "user" and m["content"].strip() for m in out):
        raise _bad("'messages' needs a user message with some text.", "messages")
    return out


def _stop(value: Any) -> list[str]:
    if value is None:
        return []
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise _bad("'stop' must be a string or a list of strings.", "stop")
    if len(stops) > MAX_STOP_STRINGS:
        raise _bad(f"'stop' takes at most {MAX_STOP_STRINGS} strings.", "stop")
    return [s for s in stops if s]


def parse_chat(body: Any) -> ChatRequest:
    """A validated request, or ApiError(400) naming the field that is wrong."""
    if not isinstance(body, dict):
        raise _bad("The body must be a JSON object.", None)
    for name in body:
        if name in KNOWN or name in IGNORED:
            continue
        if name in UNSUPPORTED:
            value = body[name]
            harmless = (
                value in (None, False, 0, 0.0, [])
                or (name == "response_format" and value == {"type": "text"})
                or (name == "tool_choice" and value == "none")
            )
            if not harmless:
                raise _bad(f"'{name}' is not supported by this server.", name, "unsupported")
            continue
        raise _bad(f"Unrecognized request argument supplied: {name}", name)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("'model' is required: one of the ids GET /v1/models lists.", "model")
    limit = _integer(body, "max_completion_tokens", 1, MAX_SERVE_TOKENS)
    if limit is None:
        limit = _integer(body, "max_tokens", 1, MAX_SERVE_TOKENS)
    n = _integer(body, "n", 1, 128)
    if n not in (None, 1):
        raise _bad("Only n=1 is supported.", "n", "unsupported")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _bad("'stream' must be true or false.", "stream", "invalid_type")
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise _bad("'stream_options' must be an object.", "stream_options")
        if not stream:
            raise _bad("'stream_options' is only allowed when 'stream' is true.", "stream_options")
    return ChatRequest(
        model=model,
        messages=_messages(body.get("messages")),
        max_tokens=limit or DEFAULT_MAX_TOKENS,
        temperature=_number(body, "temperature", 0.0, 2.0, 0.0),
        top_p=_number(body, "top_p", 1e-6, 1.0, 1.0),
        stop=_stop(body.get("stop")),
        seed=int(_integer(body, "seed", 0, 2**31 - 1) or 0),
        stream=bool(stream),
        include_usage=bool((options or {}).get("include_usage")),
    )


def new_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def usage(done: dict[str, Any]) -> dict[str, int]:
    got = done.get("usage") or {}
    prompt, completion = int(got.get("prompt_tokens", 0)), int(got.get("completion_tokens", 0))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def sources(done: dict[str, Any]) -> list[dict[str, Any]]:
    """The cited sources of an application's answer (none for a plain model)."""
    return [
        {
            "chunk_id": c.get("chunk_id"),
            "document_name": c.get("document_name"),
            "position": c.get("position"),
        }
        for c in done.get("citations") or []
    ]


def completion(cid: str, model: str, done: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": str(done.get("answer", ""))},
                "finish_reason": done.get("finish_reason", "stop"),
            }
        ],
        "usage": usage(done),
        "sources": sources(done),
    }


def chunk(
    cid: str,
    created: int,
    model: str,
    delta: dict[str, Any],
    finish_reason: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        **extra,
    }
