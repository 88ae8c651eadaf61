"""The serving task (queue "serve"): answers API requests with deployed models kept
loaded. No Job row."""

from __future__ import annotations

import logging
from pathlib import Path

from django.conf import settings

from lifecycle_app.storage import local_dir
from workers.celery import app
from workers.ml.errors import UserFacingError

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
        loaded = serve.warm_model(str(local_dir(path)), Path(settings.MODELS_DIR))
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
