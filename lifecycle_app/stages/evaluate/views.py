"""Evaluation: the project's scorecard, one evaluation's scorecard (live while it runs),
two candidates side by side, and CSV / JSON exports. Starting an evaluation happens on the
wizard's Adapt / Evaluate step (lifecycle_app/wizard/views.py with this stage's step.py).

The member pages and the share pages (lifecycle_app/wizard/share_views.py) render the same templates through
`scorecard_response` / `compare_response`; share pages leave out exports and controls.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from lifecycle_app.common.http import HtmxHttpRequest
from lifecycle_app.jobs.models import Job
from lifecycle_app.projects import selectors as projects_selectors
from lifecycle_app.projects.models import Membership, Project, StageKey
from lifecycle_app.projects.steps import StepSlug
from lifecycle_app.stages.evaluate import scorecard, selectors
from lifecycle_app.teams.models import ShareLink
from workers.ml.scoring.metrics import EVAL_LABELS, LOWER_IS_BETTER

SORTS = ("diff", "-diff", "row")


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() and len(value) < 19 else None


def _scope(project: Project) -> dict[str, Any]:
    stages = projects_selectors.stages_for_project(project=project)
    return projects_selectors.step_answers(stages, StageKey.SCOPE, StepSlug.USE_CASE)


def scorecard_response(
    request: HtmxHttpRequest,
    *,
    project: Project,
    membership: Membership | None,
    job: Job | None,
    share: ShareLink | None = None,
) -> HttpResponse:
    context: dict[str, Any] = {
        "project": project,
        "membership": membership,
        "share": share,
        "job": job,
        "evaluations": selectors.evaluation_list(project=project, limit=20),
    }
    if job is not None:
        candidates = selectors.evaluation_candidates(job=job)
        card = scorecard.build(
            candidates,
            task=job.params.get("task", "text"),
            baseline_id=_int(request.GET.get("baseline")),
            scope=_scope(project),
        )
        best = scorecard.leader(card)
        scored = [r.candidate for r in card.rows if r.available]
        context.update(
            {
                "card": card,
                "candidates": candidates,
                "scored": scored,
                "chart": card.chart_data(),
                "compare_a": card.baseline.id if card.baseline else None,
                "compare_b": best.candidate.id
                if best is not None
                else next((c.id for c in scored if c != card.baseline), None),
                "leader": best,
            }
        )
    template = "evaluate/scorecard.html"
    if request.htmx and request.htmx.target == "eval-live":  # the page's own polling
        template += "#live"
    return render(request, template, context)


@login_required
@require_GET
def scorecard_view(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    """The project's scorecard: its latest evaluation that scored something."""
    project, membership = projects_selectors.project_get_for_user(user=request.user, slug=slug)
    job = selectors.evaluation_latest(project=project)
    return scorecard_response(request, project=project, membership=membership, job=job)


@login_required
@require_GET
def evaluation_detail(request: HtmxHttpRequest, slug: str, eval_id: int) -> HttpResponse:
    project, membership = projects_selectors.project_get_for_user(user=request.user, slug=slug)
    job = selectors.evaluation_get(project=project, job_id=eval_id)
    return scorecard_response(request, project=project, membership=membership, job=job)


def compare_response(
    request: HtmxHttpRequest,
    *,
    project: Project,
    membership: Membership | None,
    job: Job,
    share: ShareLink | None = None,
) -> HttpResponse:
    """Two candidates' outputs row by row, with the input and the reference, sorted by
    the difference of one metric (B - A)."""
    candidates = selectors.evaluation_candidates(job=job)
    scored = [c for c in candidates if c.is_scored]
    by_id = {c.id: c for c in scored}
    task = job.params.get("task", "text")
    card = scorecard.build(candidates, task=task, scope=_scope(project))
    # Opens on the baseline against the best other candidate: the comparison that matters.
    best = scorecard.leader(card)
    a = by_id.get(_int(request.GET.get("a")) or 0) or (
        card.baseline if card.baseline in scored else (scored[0] if scored else None)
    )
    b = by_id.get(_int(request.GET.get("b")) or 0) or (
        best.candidate if best is not None and best.candidate != a else None
    )
    b = b or next((c for c in scored if c != a), None)
    keys = [k for k, _ in card.columns]
    metric = request.GET.get("metric") or ""
    if metric not in keys:
        metric = "rougeL" if "rougeL" in keys else (keys[0] if keys else "")
    sort = request.GET.get("sort") or "diff"
    if sort not in SORTS:
        sort = "diff"
    context: dict[str, Any] = {
        "project": project,
        "membership": membership,
        "share": share,
        "job": job,
        "scored": scored,
        "a": a,
        "b": b,
        "metric": metric,
        "metric_label": EVAL_LABELS.get(metric, metric),
        "metric_choices": [(k, EVAL_LABELS.get(k, k)) for k in keys],
        "lower_is_better": metric in LOWER_IS_BETTER,
        "sort": sort,
        "pairs": [],
    }
    if a is not None and b is not None and a != b:
        pairs = scorecard.pairs(
            selectors.evaluation_examples(candidate=a),
            selectors.evaluation_examples(candidate=b),
            metric=metric,
            sort=sort,
        )
        sign = -1 if metric in LOWER_IS_BETTER else 1
        context.update(
            pairs=pairs,
            b_wins=sum(1 for p in pairs if (p.difference or 0) * sign > 0),
            a_wins=sum(1 for p in pairs if (p.difference or 0) * sign < 0),
        )
    return render(request, "evaluate/compare.html", context)


@login_required
@require_GET
def evaluation_compare(request: HtmxHttpRequest, slug: str, eval_id: int) -> HttpResponse:
    project, membership = projects_selectors.project_get_for_user(user=request.user, slug=slug)
    job = selectors.evaluation_get(project=project, job_id=eval_id)
    return compare_response(request, project=project, membership=membership, job=job)


@login_required
@require_GET
def evaluation_export(request: HtmxHttpRequest, slug: str, eval_id: int) -> HttpResponse:
    """?what=scorecard|examples & format=csv|json, as a download."""
    project, _ = projects_selectors.project_get_for_user(user=request.user, slug=slug)
    job = selectors.evaluation_get(project=project, job_id=eval_id)
    what = request.GET.get("what", "scorecard")
    fmt = request.GET.get("format", "csv")
    if what not in ("scorecard", "examples") or fmt not in ("csv", "json"):
        raise Http404("No such export.")
    candidates = selectors.evaluation_candidates(job=job)
    if what == "scorecard":
        card = scorecard.build(
            candidates,
            task=job.params.get("task", "text"),
            baseline_id=_int(request.GET.get("baseline")),
            scope=projects_selectors.step_answers(
                projects_selectors.stages_for_project(project=project),
                StageKey.SCOPE,
                StepSlug.USE_CASE,
            ),
        )
        records = scorecard.as_records(card)
        meta = {
            "evaluation": job.id,
            "project": project.slug,
            "dataset": job.dataset.name if job.dataset else None,
            "split": job.params.get("split"),
            "rows": job.result.get("rows"),
            "sample_seed": job.params.get("sample_seed"),
            "baseline": card.baseline.label if card.baseline else None,
            "target": (
                {"metric": card.target.key, "value": card.target.value} if card.target else None
            ),
        }
    else:
        records = scorecard.example_records(candidates, selectors.evaluation_all_examples(job=job))
        meta = {"evaluation": job.id, "project": project.slug}
    name = f"{project.slug}-evaluation-{job.id}-{what}.{fmt}"
    if fmt == "json":
        body = json.dumps({**meta, what: records}, indent=2, ensure_ascii=False)
        response = HttpResponse(body, content_type="application/json")
    else:
        response = HttpResponse(scorecard.to_csv(records), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
