"""Each trial's change against the project's zero-shot trial on the same rows and model, so
"few-shot helped by +5.8 ROUGE-1" (or hurt) is read at a glance.

The zero-shot trial compared against: a succeeded trial with 0 shots, the same model, the
same dataset, split and number of rows (trials run the first N rows of a split, so those are
the same rows), preferring the same template, then the newest. Changes are in points (the
score x 100), the way ROUGE and accuracy are usually quoted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from lifecycle_app.jobs.models import Job, JobKind, JobStatus
from workers.ml.scoring.metrics import LABELS

PRIMARY_KEYS = ("rouge1", "accuracy", "exact_match")


def primary_metric(scores: dict[str, float]) -> str | None:
    """The score a trial is summed up by: ROUGE-1 for text, accuracy for labels."""
    return next((k for k in PRIMARY_KEYS if k in scores), next(iter(scores), None))


def points(delta: float) -> str:
    """A change in points, signed: +5.8, or -3.0 written with a true minus sign (U+2212)."""
    value = round(delta * 100, 1)
    if value == 0:
        return "±0.0"
    return f"+{value:.1f}" if value > 0 else f"\u2212{abs(value):.1f}"


@dataclass(frozen=True)
class ZeroShotChange:
    baseline_id: int
    metric: str
    label: str
    delta: float  # score - zero-shot score (0-1 scale)
    deltas: dict[str, float] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return f"{points(self.delta)} {self.label}"

    @property
    def verdict(self) -> str:
        """ "helped" / "hurt" / "no change" (within half a point)."""
        if abs(self.delta) < 0.005:
            return "no change"
        return "helped" if self.delta > 0 else "hurt"


def _key(job: Job) -> tuple[object, ...]:
    p = job.params or {}
    return (job.base_model_id, p.get("dataset_id"), p.get("split"), p.get("n_rows"))


def _template_name(job: Job) -> str:
    return str(((job.params or {}).get("template") or {}).get("name", ""))


def change_against(job: Job, zero: Job) -> ZeroShotChange | None:
    scores = (job.result or {}).get("scores") or {}
    base = (zero.result or {}).get("scores") or {}
    metric = primary_metric(scores)
    if metric is None or metric not in base:
        return None
    deltas = {k: round(v - base[k], 6) for k, v in scores.items() if k in base}
    return ZeroShotChange(
        baseline_id=zero.id,
        metric=metric,
        label=LABELS.get(metric, metric),
        delta=deltas[metric],
        deltas=deltas,
    )


def annotate_zero_shot_change(*, project_id: int, trials: Iterable[Job]) -> None:
    """Set `job.vs_zero` (a ZeroShotChange, or None when there is no zero-shot trial to
    compare with) and `job.zero_shot_baseline` (True on zero-shot trials) on each trial.
    One query."""
    trials = list(trials)
    for job in trials:
        job.vs_zero = None  # type: ignore[attr-defined]
        job.zero_shot_baseline = False  # type: ignore[attr-defined]
    if not trials:
        return
    zeros = (
        Job.objects.filter(
            project_id=project_id,
            kind=JobKind.TRIAL,
            status=JobStatus.SUCCEEDED,
            params__shots=0,
        )
        .only("id", "base_model_id", "params", "result")
        .order_by("-id")
    )
    by_key: dict[tuple[object, ...], list[Job]] = {}
    for zero in zeros:
        by_key.setdefault(_key(zero), []).append(zero)
    for job in trials:
        if (job.params or {}).get("shots", 0) == 0:
            job.zero_shot_baseline = True  # type: ignore[attr-defined]
            continue
        candidates = by_key.get(_key(job), [])
        same_template = [z for z in candidates if _template_name(z) == _template_name(job)]
        if candidates:
            zero = (same_template or candidates)[0]
            job.vs_zero = change_against(job, zero)  # type: ignore[attr-defined]
