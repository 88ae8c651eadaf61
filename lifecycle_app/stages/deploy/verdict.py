"""Which variant to deploy: the trade-off table's verdict from the Scope target and
latency budget, and the warning on a variant whose method is known to lose quality.

The rule: among the measured variants whose quality reaches the Scope target (on the
target's metric) and whose one-request latency fits the Scope latency budget, deploy the
fastest (highest tokens/s). Without a target on a measured metric, "reaches" means within
`PARENT_TOLERANCE` of its own parent; without a budget, every latency fits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lifecycle_app.stages.evaluate.scorecard import SCOPE_METRIC_KEYS
from lifecycle_app.stages.scope.guide import METRICS
from workers.ml.scoring.metrics import LABELS as METRIC_LABELS

PARENT_TOLERANCE = 0.02
DYNAMIC_INT8 = "int8"


@dataclass(frozen=True)
class Verdict:
    variant_id: int | None  # the one to deploy; None when no variant qualifies
    headline: str
    rule: str  # the rule in one sentence, with this project's numbers


def quality_warning(row: dict[str, Any]) -> str | None:
    """The warning a dynamic-int8 row carries, with its own measured drop when it has one."""
    if row["variant"].kind != DYNAMIC_INT8:
        return None
    drops = {s["key"]: s["delta"] for s in row["scores"] if s["delta"] is not None}
    key = next((k for k in ("rouge1", "rougeL", "accuracy") if k in drops), None)
    if key is None and drops:
        key = next(iter(drops))
    if key is None:
        measured = "not measured here (export with a dataset to see it)"
    else:
        measured = f"{METRIC_LABELS.get(key, key)} {drops[key]:+.3f} against its parent"
    return (
        f"Dynamic int8 halves quality on small models: measured drop {measured}. "
        "Prefer int8 weight-only or ONNX block-wise int8."
    )


def _score(row: dict[str, Any], key: str) -> dict[str, Any] | None:
    return next((s for s in row["scores"] if s["key"] == key), None)


def tradeoff_verdict(*, rows: list[dict[str, Any]], scope: dict[str, Any]) -> Verdict | None:
    """The verdict, and each row's "meets_quality" / "meets_latency" flags (set in place:
    True, False, or None when not measured). None when there is nothing to judge."""
    if not rows:
        return None
    metric = scope.get("success_metric")
    target = None if scope.get("metric_target") is None else float(scope["metric_target"])
    key = SCOPE_METRIC_KEYS.get(str(metric), "") if metric else ""
    measured_keys = {s["key"] for r in rows for s in r["scores"]}
    use_target = bool(key) and target is not None and key in measured_keys
    budget = scope.get("max_latency_ms")
    label = METRICS[metric].label if metric in METRICS else METRIC_LABELS.get(key, key)
    if use_target:
        quality_rule = f"{label} reaches the Scope target {target:g}"
    else:
        quality_rule = f"its quality is within {PARENT_TOLERANCE} of its parent's"
    latency_rule = (
        f"one request fits the Scope latency budget of {int(budget)} ms"
        if budget
        else "latency may be anything (Scope sets no latency budget)"
    )
    rule = f"Deploy the fastest variant (highest tokens/s) whose {quality_rule} and whose {latency_rule}."
    for r in rows:
        if use_target:
            s = _score(r, key)
            r["meets_quality"] = None if s is None or target is None else s["value"] >= target
        else:
            deltas = [s["delta"] for s in r["scores"] if s["delta"] is not None]
            r["meets_quality"] = min(deltas) >= -PARENT_TOLERANCE if deltas else None
        latency = r.get("latency_ms")
        r["meets_latency"] = (None if latency is None else latency <= budget) if budget else True
    good = [r for r in rows if r["meets_quality"] and r["meets_latency"] and r["tokens_per_s"]]
    if good:
        best = max(good, key=lambda r: r["tokens_per_s"])
        v = best["variant"]
        return Verdict(
            v.id,
            f"Deploy {v.get_kind_display()} #{v.job_id}: {best['tokens_per_s']:.1f} tokens/s, "
            f"{best['latency_ms']:.0f} ms per request, quality within the rule.",
            rule,
        )
    if not any(r["meets_quality"] is not None for r in rows):
        headline = "No variant has measured quality yet: export with a dataset to judge them."
    elif not any(r["meets_quality"] for r in rows):
        headline = "No variant reaches the quality bar: improve the model before optimizing it."
    else:
        headline = "The variants that keep quality are too slow for the latency budget."
    return Verdict(None, headline, rule)
