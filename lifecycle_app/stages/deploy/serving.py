"""The web side of serving: find the deployed model, hand the request to the serving
worker and wait for its reply (see workers/serve_reply.py). The web process never loads
a model."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings

from lifecycle_app.projects.models import Project
from lifecycle_app.stages.deploy.models import ModelVariant
from workers import serve_reply
from workers.ml.params import ServeRequest

logger = logging.getLogger(__name__)


class ServingUnavailable(Exception):
    """The request could not be handed to the serving worker (broker down)."""


def deployed_variant(*, project: Project) -> ModelVariant | None:
    return (
        ModelVariant.objects.select_related("candidate")
        .filter(project=project, deployed_at__isnull=False)
        .first()
    )


def serve_request(
    *, variant: ModelVariant, request: ServeRequest, timeout: float | None = None
) -> dict[str, Any] | None:
    """The serving worker's reply, or None when none came within `timeout` seconds."""
    from workers.celery import app

    timeout = settings.SERVE_TIMEOUT_S if timeout is None else timeout
    key = serve_reply.new_key()
    try:
        app.send_task(
            "serve.generate",
            args=[key, variant.path, request.model_dump()],
            queue="serve",
            expires=timeout,
        )
    except Exception as exc:
        logger.exception("Could not hand an API request to the serving worker")
        raise ServingUnavailable(type(exc).__name__) from exc
    return serve_reply.wait(key, timeout)
