"""Serving log writes."""

from __future__ import annotations

import logging

from lifecycle_app.projects.models import Project
from lifecycle_app.stages.integrate.api.models import ServingLog

logger = logging.getLogger(__name__)


def serving_log_record(
    *,
    project: Project,
    model: str,
    status: int,
    latency_ms: float,
    ttft_ms: float | None = None,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    streamed: bool = False,
    error: str = "",
) -> ServingLog | None:
    """One insert after the answer went out. Monitoring must never fail a request: a
    failed write is logged and dropped."""
    try:
        return ServingLog.objects.create(
            project=project,
            model=model[:120],
            status=status,
            error=error[:200],
            latency_ms=max(0, round(latency_ms)),
            ttft_ms=None if ttft_ms is None else max(0, round(ttft_ms)),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            streamed=streamed,
        )
    except Exception:
        logger.exception("Could not write the serving log row")
        return None
