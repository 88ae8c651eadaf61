"""Deploy reads: variants, API tokens and the size / speed / quality trade-off table."""

from __future__ import annotations

from typing import Any

from django.http import Http404

from lifecycle_app.jobs.models import Job, JobKind
from lifecycle_app.projects.models import Project
from lifecycle_app.stages.deploy.models import ApiToken, ModelVariant


def variant_get(*, project: Project, variant_id: int) -> ModelVariant:
    variant = (
        ModelVariant.objects.select_related("candidate", "parent", "job")
        .filter(project=project, id=variant_id)
        .first()
    )
    if variant is None:
        raise Http404("No such variant in this project.")
    return variant


def api_token_get(*, project: Project, token_id: int) -> ApiToken:
    token = ApiToken.objects.filter(project=project, id=token_id).first()
    if token is None:
        raise Http404("No such API token in this project.")
    return token


def api_token_list(*, project: Project) -> list[ApiToken]:
    return list(ApiToken.objects.filter(project=project).select_related("created_by")[:50])


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def tradeoff_rows(*, project: Project) -> list[dict[str, Any]]:
    """The trade-off table: each variant beside its parent, measured by its export job on
    the same worker with the same prompts and settings. Changes are variant - parent
    (scores, absolute) or variant / parent (size, speed)."""
    rows = []
    variants = ModelVariant.objects.filter(project=project).select_related(
        "candidate", "parent", "job"
    )
    for v in variants:
        m = v.measurements or {}
        mine, parent = m.get("variant") or {}, m.get("parent") or {}
        scores = mine.get("scores") or {}
        parent_scores = parent.get("scores") or {}
        rows.append(
            {
                "variant": v,
                "settings": m.get("settings") or {},
                "size_mb": (mine.get("size_bytes") or 0) / 2**20,
                "parent_size_mb": (parent.get("size_bytes") or 0) / 2**20,
                "size_ratio": _ratio(mine.get("size_bytes"), parent.get("size_bytes")),
                "load_s": mine.get("load_s"),
                "parent_load_s": parent.get("load_s"),
                "tokens_per_s": mine.get("tokens_per_s"),
                "parent_tokens_per_s": parent.get("tokens_per_s"),
                "speedup": _ratio(mine.get("tokens_per_s"), parent.get("tokens_per_s")),
                "latency_ms": mine.get("latency_ms"),
                "parent_latency_ms": parent.get("latency_ms"),
                "latency_tokens": mine.get("latency_tokens"),
                "ms_per_token": _per_token(mine),
                "parent_ms_per_token": _per_token(parent),
                "parent_latency_tokens": parent.get("latency_tokens"),
                "scores": [
                    {
                        "key": k,
                        "value": value,
                        "parent": parent_scores.get(k),
                        "delta": value - parent_scores[k] if k in parent_scores else None,
                    }
                    for k, value in scores.items()
                ],
            }
        )
    return rows


def export_jobs(*, project: Project, limit: int = 5) -> list[Job]:
    return list(
        Job.objects.filter(project=project, kind=JobKind.EXPORT)
        .select_related("base_model")
        .prefetch_related("outputs")
        .order_by("-created_at", "-id")[:limit]
    )


def _per_token(measured: dict[str, Any]) -> float | None:
    """Milliseconds per generated token of the one-request latency (measurements from
    before fixed-length latency have different lengths: per token they still compare)."""
    latency, tokens = measured.get("latency_ms"), measured.get("latency_tokens")
    return round(float(latency) / int(tokens), 2) if latency and tokens else None
