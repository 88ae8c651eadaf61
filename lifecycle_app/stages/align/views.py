"""Human feedback pages: rating rounds (create, rate with the keyboard, progress and
agreement, build a preference set) and preference sets (view, export, import)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseLocation

from lifecycle_app.common.http import HtmxHttpRequest, authed_user
from lifecycle_app.jobs.models import JobKind
from lifecycle_app.projects import selectors as projects_selectors
from lifecycle_app.projects.models import StageKey
from lifecycle_app.projects.steps import StepSlug
from lifecycle_app.stages.align import agreement as feedback
from lifecycle_app.stages.align import selectors, services
from lifecycle_app.stages.align.forms import PreferenceImportForm, RoundForm
from lifecycle_app.stages.align.models import Choice, FeedbackItem
from lifecycle_app.stages.finetune import selectors as finetune_selectors
from lifecycle_app.stages.finetune.views import dashboard_response
from lifecycle_app.stages.prompt import selectors as prompt_selectors

CHOICE_WORDS = {"a": "A", "b": "B", "tie": "tie", "both_bad": "both bad"}


def _align_step(slug: str) -> str:
    return reverse("wizard_step", args=[slug, StageKey.ADAPT, "align"])


@login_required
@require_POST
def round_new(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    project, _ = projects_selectors.project_get_for_user(user=request.user, slug=slug, write=True)
    form = RoundForm(request.POST, trials=prompt_selectors.succeeded_trials(project=project))
    if form.is_valid():
        try:
            rnd = services.round_create(
                project=project,
                user=authed_user(request),
                name=form.cleaned_data["name"] or "",
                trial_a=form.cleaned_data["trial_a"],
                trial_b=form.cleaned_data["trial_b"],
                max_items=form.cleaned_data["max_items"],
            )
        except services.FeedbackError as exc:
            messages.error(request, str(exc))
        else:
            return redirect("round_detail", slug=project.slug, round_id=rnd.id)
    else:
        for field, errors in form.errors.items():
            label = form.fields[field].label if field in form.fields else ""
            for error in errors:
                messages.error(request, f"{label}: {error}" if label else str(error))
    return redirect(_align_step(project.slug))


def _rater_names(ratings: list) -> dict[int, str]:
    return {r.rater_id: r.rater.username for r in ratings}


@login_required
@require_GET
def round_detail(request: HtmxHttpRequest, slug: str, round_id: int) -> HttpResponse:
    project, membership = projects_selectors.project_get_for_user(user=request.user, slug=slug)
    rnd = selectors.feedback_round_get(project=project, round_id=round_id)
    ratings = selectors.round_ratings(rnd=rnd)
    names = _rater_names(ratings)
    total = rnd.items.count()
    per_rater = Counter(r.rater_id for r in ratings)
    agreement = feedback.agreement((r.item_id, r.rater_id, r.choice) for r in ratings)
    tallies: dict[int, Counter[str]] = defaultdict(Counter)
    for r in ratings:
        tallies[r.item_id][r.choice] += 1
    items = list(rnd.items.all())
    rows = [
        {
            "item": item,
            "votes": ", ".join(
                f"{CHOICE_WORDS[c]} ×{n}" for c, n in sorted(tallies[item.id].items())
            ),
            "majority": feedback.majority(list(tallies[item.id].elements())),
        }
        for item in items
    ]
    overall = Counter(r.choice for r in ratings)
    mine = per_rater.get(authed_user(request).id, 0)
    revealed = selectors.sources_revealed(
        mine=mine,
        total=total,
        per_rater=dict(per_rater),
        can_manage=membership.can_manage,
        can_write=membership.can_write,
    )
    return render(
        request,
        "align/round.html",
        {
            "project": project,
            "membership": membership,
            "round": rnd,
            "total": total,
            "raters": [
                {"name": names[rid], "done": n, "share": n / total if total else 0}
                for rid, n in sorted(per_rater.items(), key=lambda kv: names[kv[0]])
            ],
            "mine": mine,
            "revealed": revealed,
            "agreement": agreement,
            "agreement_pairs": [
                {"names": f"{names[p.rater_1]} & {names[p.rater_2]}", "pair": p}
                for p in agreement.pairs
            ],
            "rows": rows,
            "overall": [(CHOICE_WORDS[c], overall.get(c, 0)) for c in Choice.values],
            "sets": list(rnd.sets.all()),
        },
    )


def _rate_context(request: HtmxHttpRequest, project, membership, rnd, item) -> dict:  # type: ignore[no-untyped-def]
    user: User = authed_user(request)
    total = rnd.items.count()
    done = rnd.items.filter(ratings__rater=user).count()
    context = {
        "project": project,
        "membership": membership,
        "round": rnd,
        "item": item,
        "total": total,
        "done": done,
    }
    if item is not None:
        left_is_a = feedback.a_on_left(item.id, user.id)
        mine = item.ratings.filter(rater=user).first()
        picked = ""
        if mine is not None:
            if mine.choice in ("a", "b"):
                picked = "left" if (mine.choice == "a") == left_is_a else "right"
            else:
                picked = mine.choice
        context.update(
            {
                "left": item.completion_a if left_is_a else item.completion_b,
                "right": item.completion_b if left_is_a else item.completion_a,
                "picked": picked,
                "comment": mine.comment if mine else "",
            }
        )
    return context


@login_required
@require_http_methods(["GET", "POST"])
def round_rate(request: HtmxHttpRequest, slug: str, round_id: int) -> HttpResponse:
    """One item at a time: the next one this rater has not rated, or ?item=N to revisit."""
    project, membership = projects_selectors.project_get_for_user(
        user=request.user, slug=slug, write=True
    )
    rnd = selectors.feedback_round_get(project=project, round_id=round_id)
    error = ""
    if request.method == "POST":
        raw = request.POST.get("item", "")
        item = (
            FeedbackItem.objects.filter(round=rnd, id=int(raw)).first()
            if raw.isdigit() and 0 < int(raw) <= projects_selectors.MAX_ID
            else None
        )
        if item is None:
            error = "That row is not part of this round; the next one is shown."
        else:
            try:
                services.rating_save(
                    item=item,
                    rater=authed_user(request),
                    side=request.POST.get("choice", ""),
                    comment=request.POST.get("comment", ""),
                )
            except services.FeedbackError as exc:
                error = str(exc)
            else:
                if not request.htmx:
                    return redirect("round_rate", slug=project.slug, round_id=rnd.id)
        user = authed_user(request)
        current = item if error else selectors.next_item_to_rate(rnd=rnd, user=user)
    else:
        wanted = request.GET.get("item", "")
        current = None
        if wanted.isdigit():
            current = rnd.items.filter(index=int(wanted)).first()
        if current is None:
            current = selectors.next_item_to_rate(rnd=rnd, user=authed_user(request))
    context = _rate_context(request, project, membership, rnd, current)
    context["error"] = error
    template = "align/rate.html"
    if request.htmx and request.htmx.target == "rate-card":
        template += "#card"
    return render(request, template, context)


@login_required
@require_POST
def round_build(request: HtmxHttpRequest, slug: str, round_id: int) -> HttpResponse:
    project, _ = projects_selectors.project_get_for_user(user=request.user, slug=slug, write=True)
    rnd = selectors.feedback_round_get(project=project, round_id=round_id)
    try:
        pset = services.preference_set_from_round(
            rnd=rnd, user=authed_user(request), name=request.POST.get("name", "").strip()
        )
    except services.FeedbackError as exc:
        messages.error(request, str(exc))
        return redirect("round_detail", slug=project.slug, round_id=rnd.id)
    messages.success(request, f"Saved '{pset.name}': {pset.note}.")
    target = reverse("prefset_detail", args=[project.slug, pset.id])
    return HttpResponseLocation(target) if request.htmx else redirect(target)


@login_required
@require_GET
def prefset_detail(request: HtmxHttpRequest, slug: str, set_id: int) -> HttpResponse:
    project, membership = projects_selectors.project_get_for_user(user=request.user, slug=slug)
    pset = selectors.preference_set_get(project=project, set_id=set_id)
    pairs = list(pset.pairs.all()[:200])
    return render(
        request,
        "align/set.html",
        {
            "project": project,
            "membership": membership,
            "set": pset,
            "pairs": pairs,
            "count": pset.pairs.count(),
        },
    )


@login_required
@require_GET
def prefset_export(request: HtmxHttpRequest, slug: str, set_id: int) -> HttpResponse:
    project, _ = projects_selectors.project_get_for_user(user=request.user, slug=slug)
    pset = selectors.preference_set_get(project=project, set_id=set_id)
    lines = (
        json.dumps(
            {"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected}, ensure_ascii=False
        )
        for p in pset.pairs.all()
    )
    response = HttpResponse(
        "\n".join(lines) + "\n", content_type="application/jsonl; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="preferences-{pset.id}.jsonl"'
    return response


@login_required
@require_http_methods(["GET", "POST"])
def prefset_import(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    project, membership = projects_selectors.project_get_for_user(
        user=request.user, slug=slug, write=request.method == "POST"
    )
    problems: list[feedback.LineProblem] = []
    if request.method == "POST":
        form = PreferenceImportForm(request.POST, request.FILES)
        if form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                pset = services.preference_set_import(
                    project=project,
                    user=authed_user(request),
                    name=form.cleaned_data["name"] or "",
                    data=upload.read(),
                    filename=upload.name or "preferences.jsonl",
                )
            except services.ImportProblems as exc:
                problems = exc.problems
            else:
                messages.success(request, f"Imported '{pset.name}': {pset.note}.")
                return redirect("prefset_detail", slug=project.slug, set_id=pset.id)
    else:
        form = PreferenceImportForm()
    return render(
        request,
        "align/import.html",
        {
            "project": project,
            "membership": membership,
            "form": form,
            "problems": problems[:200],
            "more_problems": max(0, len(problems) - 200),
        },
    )


@login_required
@require_GET
def align_run_detail(request: HtmxHttpRequest, slug: str, align_run_id: int) -> HttpResponse:
    """An alignment run's live dashboard: the fine-tuning one, with the run's preference set."""
    project, membership = projects_selectors.project_get_for_user(user=request.user, slug=slug)
    job = finetune_selectors.run_get(project=project, job_id=align_run_id, kinds=(JobKind.ALIGN,))
    titles = {
        "run_title": "Alignment",
        "step_title": "Align with human feedback",
        "step_slug": StepSlug.ALIGN,
        "live_url": reverse("align_run_detail", args=[project.slug, job.id]),
        "preference_set": selectors.preference_set_of(job=job),
    }
    return dashboard_response(
        request, project=project, membership=membership, job=job, titles=titles
    )
