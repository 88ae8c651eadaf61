"""The web side of serving: find the deployed model, hand the request to the serving
worker and wait for its reply or read its stream (see workers/serve_reply.py). The web
process never loads a model.

Streams are read in the web thread that serves the request (a StreamingHttpResponse over
`serve_stream`): one thread per open stream, blocked in BLPOP between events, never a
thread per token. When the client goes away the response is closed, the generator's
`finally` asks the worker to stop, and the worker stops within one token.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
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
        ModelVariant.objects.select_related("candidate", "job", "parent__trained_by_job")
        .filter(project=project, deployed_at__isnull=False)
        .first()
    )


def serve_call(task: str, args: list[Any], timeout: float | None = None) -> dict[str, Any] | None:
    """Send `task` to the serving worker (queue "serve", which keeps models and indexes
    loaded) with a reply key before `args`; its reply, or None when none came within
    `timeout` seconds. Raises ServingUnavailable when the queue cannot be reached."""
    from workers.celery import app

    timeout = settings.SERVE_TIMEOUT_S if timeout is None else timeout
    key = serve_reply.new_key()
    try:
        app.send_task(task, args=[key, *args], queue="serve", expires=timeout)
    except Exception as exc:
        logger.exception("Could not hand %s to the serving worker", task)
        raise ServingUnavailable(type(exc).__name__) from exc
    return serve_reply.wait(key, timeout)


def serve_request(
    *, variant: ModelVariant, request: ServeRequest, timeout: float | None = None
) -> dict[str, Any] | None:
    """The serving worker's reply, or None when none came within `timeout` seconds."""
    return serve_call("serve.generate", [variant.path, request.model_dump()], timeout)


API_EXAMPLE_INPUT = "A: Can we move the stand-up to 10:30? B: Fine by me, I will tell the team."


def served_model_id(variant: ModelVariant) -> str:
    """The `model` id `/v1/models` lists for a deployed variant and requests must name."""
    return variant.candidate.slug if variant.candidate else f"variant-{variant.id}"


def serving_example(*, variant: ModelVariant) -> dict[str, Any]:
    """What the serving panel shows for the deployed variant: the model id, the prompt
    template the endpoint applies (None: messages go to the model as they are) and what an
    example user text becomes inside it (before the model's own chat template)."""
    from workers.ml.prompts import TemplateSpec, render_user_text

    template = deployed_template(variant=variant)
    filled = None
    if template is not None:
        spec = TemplateSpec(
            instruction=template["instruction"],
            example_format=template["example_format"],
            body=template["body"],
            use_chat_template=template["use_chat_template"],
            shot_style=template.get("shot_style", "inline"),
        )
        filled = render_user_text(spec, [], API_EXAMPLE_INPUT)
    return {
        "model_id": served_model_id(variant),
        "template": template,
        "filled": filled,
        "input": API_EXAMPLE_INPUT,
    }


def deployed_template(*, variant: ModelVariant) -> dict[str, Any] | None:
    """The prompt template the deployed model was trained with (its fine-tuning job's),
    else the one its export measured it with; None when it has neither (then requests go
    to the model as they are)."""
    source = variant.parent
    trained = source.trained_by_job if source.trained_by_job_id else None
    for params in ((trained.params if trained else None), variant.job.params):
        template = (params or {}).get("template")
        if isinstance(template, dict):
            return template
    return None


def serve_stream(
    *, model_path: str, payload: dict[str, Any], timeout: float
) -> Generator[dict[str, Any]]:
    """Send `payload` to the "serve" queue and yield the worker's events as they arrive.

    `payload` is a `workers.ml.serving.ChatPayload` as a dict (unknown keys are refused):
    {"messages": [{"role", "content"}...], "max_tokens", "temperature" (0 = greedy),
    "top_p", "seed", "stop": [...], "template": TemplateSnapshot dict or None, "app":
    {"config": AppConfig.to_dict(), "question": str} or None}; with "app" the worker
    answers through `workers.ml.application.answer_question`. Events: {"type": "start"}, then (an app's)
    "retrieval" and "prompt", "delta"s, and last "done" or {"type": "error", "status",
    "message"}. `timeout` is the longest wait for any one event (the first included).

    Closing the generator early (the client went away) tells the worker to stop.
    """
    from workers.celery import app

    key = serve_reply.new_key()
    try:
        app.send_task(
            "serve.stream", args=[key, model_path, payload], queue="serve", expires=timeout
        )
    except Exception as exc:
        logger.exception("Could not hand a streamed API request to the serving worker")
        yield {
            "type": "error",
            "status": 503,
            "error_type": "service_unavailable",
            "message": f"The serving queue could not be reached ({type(exc).__name__}); try again.",
        }
        return
    finished = False
    stream = serve_reply.events(key, timeout)
    try:
        for event in stream:
            if event is None:
                finished = True
                yield {
                    "type": "error",
                    "status": 504,
                    "error_type": "timeout",
                    "message": f"No answer from the serving worker within {timeout:g} s. Is a "
                    "worker running on the 'serve' queue? Try fewer max_tokens.",
                }
                return
            finished = event.get("type") in ("done", "error")
            yield event
            if finished:
                return
    finally:
        if not finished:
            serve_reply.cancel(key)
        stream.close()
        serve_reply.discard(key)
