"""Serving log reads: request counts, latency percentiles and errors per day."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, date, timedelta
from typing import Any

from django.utils import timezone

from lifecycle_app.projects.models import Project
from lifecycle_app.stages.integrate.api.models import ServingLog


def percentile(values: list[int], q: float) -> int | None:
    """The nearest-rank percentile (q in 0..100) of `values`; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def serving_stats(project: Project, days: int = 7) -> dict[str, Any]:
    """The last `days` days (UTC, today included) of the project's API traffic:
    {"days": [{"day", "requests", "errors", "p50_ms", "p95_ms", "ttft_p50_ms"}, ...] oldest
    first, every day present, "total": the same over the whole window}. One query."""
    today = timezone.now().astimezone(UTC).date()
    first = today - timedelta(days=days - 1)
    rows = ServingLog.objects.filter(project=project, created_at__date__gte=first).values_list(
        "created_at", "latency_ms", "ttft_ms", "status", "error"
    )
    latency: dict[date, list[int]] = defaultdict(list)
    ttft: dict[date, list[int]] = defaultdict(list)
    errors: dict[date, int] = defaultdict(int)
    for created, ms, first_ms, status, error in rows:
        day = created.astimezone(UTC).date()
        latency[day].append(ms)
        if first_ms is not None:
            ttft[day].append(first_ms)
        if status >= 400 or error:
            errors[day] += 1

    def summary(lat: list[int], tt: list[int], err: int) -> dict[str, Any]:
        return {
            "requests": len(lat),
            "errors": err,
            "p50_ms": percentile(lat, 50),
            "p95_ms": percentile(lat, 95),
            "ttft_p50_ms": percentile(tt, 50),
        }

    out = [
        {"day": d, **summary(latency[d], ttft[d], errors[d])}
        for d in (first + timedelta(days=i) for i in range(days))
    ]
    total = summary(
        [v for vs in latency.values() for v in vs],
        [v for vs in ttft.values() for v in vs],
        sum(errors.values()),
    )
    return {"days": out, "total": total, "window_days": days}
