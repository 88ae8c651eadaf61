"""The serving task (queue "serve"): answers API requests with deployed models kept
loaded. No Job row."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from django.conf import settings

from lifecycle_app.storage import local_dir
from workers.celery import app
from workers.ml.errors import UserFacingError
from workers.tasks.base import model_folder

logger = logging.getLogger(__name__)

SERVE_SOFT_LIMIT_S = 120


@app.task(
    name="serve.generate",
    acks_late=False,  # a request nobody waits for any more is not worth redelivering
    soft_time_limit=SERVE_SOFT_LIMIT_S,
    time_limit=SERVE_SOFT_LIMIT_S + 10,
)
def serve_generate(reply_key: str, path: str, request: dict[str, object]) -> None:
    """Answer one API request with the deployed model at `path` (kept loaded). Touches no
    database row: the web process already checked the token and found the model."""
    from workers import serve_reply
    from workers.ml import serving as serve
    from workers.ml.params import ServeRequest

    reply: dict[str, object]
    try:
        # A store key: fetched through this host's cache (lifecycle_app/storage).
        loaded = serve.warm_model(model_folder(path), Path(settings.MODELS_DIR))
        reply = {"ok": True, **serve.complete(loaded, ServeRequest(**request))}  # type: ignore[arg-type]
    except serve.PromptTooLong as exc:
        reply = {"ok": False, "status": 400, "type": "invalid_request_error", "message": str(exc)}
    except UserFacingError as exc:
        reply = {"ok": False, "status": 503, "type": "model_unavailable", "message": str(exc)}
    except Exception as exc:
        logger.exception("Serving request %s failed", reply_key)
        reply = {
            "ok": False,
            "status": 500,
            "type": "server_error",
            "message": f"The model failed on this request ({type(exc).__name__}).",
        }
    serve_reply.send(reply_key, reply)


@app.task(
    name="serve.stream",
    acks_late=False,
    soft_time_limit=SERVE_SOFT_LIMIT_S,
    time_limit=SERVE_SOFT_LIMIT_S + 10,
)
def serve_stream(reply_key: str, path: str, payload: dict[str, object]) -> None:
    """Answer one streamed request with the deployed model at `path`: events go to the
    request's stream (workers/serve_reply.py) as they are made, ending with "done" or
    {"type": "error", "status", "message"}. Stops between tokens when the web cancels."""
    from celery.exceptions import SoftTimeLimitExceeded
    from pydantic import ValidationError

    from workers import serve_reply
    from workers.ml import serving as serve
    from workers.ml.errors import GenerationError

    sink = serve_reply.EventSink(reply_key)
    try:
        sink.send({"type": "start"})
        request = serve.ChatPayload(**payload)  # type: ignore[arg-type]
        # Resolved on this host: a store key fetched, a catalog reference prepared here.
        loaded = serve.warm_model(model_folder(path), Path(settings.MODELS_DIR))
        if request.app is not None:
            _answer_with_app(loaded, request, sink)
        else:
            serve.stream_chat(loaded, request, sink.send, sink.cancelled)
    except SoftTimeLimitExceeded:
        sink.send(_error(504, f"The answer took over {SERVE_SOFT_LIMIT_S} s; ask fewer tokens."))
    except (GenerationError, ValidationError) as exc:
        sink.send(_error(400, str(exc), "invalid_request_error"))
    except UserFacingError as exc:
        sink.send(_error(503, str(exc), "model_unavailable"))
    except Exception as exc:
        logger.exception("Streamed serving request %s failed", reply_key)
        sink.send(
            _error(500, f"The model failed on this request ({type(exc).__name__}).", "server_error")
        )


def _error(status: int, message: str, kind: str = "timeout") -> dict[str, object]:
    return {"type": "error", "status": status, "error_type": kind, "message": message}


def _answer_with_app(loaded: object, request: object, sink: object) -> None:
    """The deployed application's answer (retrieval, reasoning aid, fallback) through
    `workers.ml.application.answer_question`, imported here so this worker starts without
    it."""
    from workers.ml import serving as serve

    assert isinstance(request, serve.ChatPayload) and request.app is not None
    try:
        from workers.ml.application import (  # type: ignore[attr-defined,unused-ignore]
            AppConfig,
            answer_question,
        )
    except ImportError as exc:
        raise UserFacingError(
            "This worker has no application pipeline (workers.ml.application); it answers "
            "plain chat only."
        ) from exc
    config = AppConfig.from_dict(request.app["config"])
    question = str(request.app.get("question") or request.question())
    index = None
    if config.retrieval != "off" and config.index_folder:
        index = _knowledge_index(config.index_folder, config.embedder_path or "")
    answer_question(
        loaded,
        config,
        question,
        request.settings(),
        emit=sink.send,  # type: ignore[attr-defined]
        should_stop=sink.cancelled,  # type: ignore[attr-defined]
        index=index,
    )


@app.task(
    name="serve.search",
    acks_late=False,
    soft_time_limit=SERVE_SOFT_LIMIT_S,
    time_limit=SERVE_SOFT_LIMIT_S + 10,
)
def serve_search(reply_key: str, folder: str, embedder_path: str, query: str, k: int) -> None:
    """The knowledge page's test search, answered here where indexes and the embedder stay
    loaded (the web process loads no model and never fetches an index from the store)."""
    from workers import serve_reply

    reply: dict[str, object]
    try:
        reply = {"ok": True, "hits": search_hits(folder, embedder_path, query, k)}
    except UserFacingError as exc:
        reply = {"ok": False, "message": str(exc)}
    except Exception as exc:
        logger.exception("Knowledge search %s failed", reply_key)
        reply = {"ok": False, "message": f"The search failed ({type(exc).__name__})."}
    serve_reply.send(reply_key, reply)


def search_hits(
    folder: str, embedder_path: str, query: str, k: int
) -> dict[str, list[dict[str, object]]]:
    """The top `k` chunks per retriever, as plain dicts (`Hit.to_dict`)."""
    from workers.ml.retrieval.index import MODES

    index = _knowledge_index(folder, embedder_path)
    return {mode: [h.to_dict() for h in index.search(query, mode, k)] for mode in MODES}  # type: ignore[attr-defined]


@functools.lru_cache(maxsize=4)
def _knowledge_index(folder: str, embedder_path: str) -> object:
    """An index loaded once per serving worker and kept (a new build has a new folder, so
    nothing goes stale): loading the embedder and the vectors on every question would
    cost more than retrieval itself. A store key is fetched through this host's cache."""
    from workers.ml.retrieval import KnowledgeIndex, load_embedder

    return KnowledgeIndex.load(local_dir(folder), load_embedder(embedder_path or None))
