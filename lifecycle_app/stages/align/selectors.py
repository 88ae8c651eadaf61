"""Alignment reads: rating rounds, ratings, preference sets, alignment runs."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db.models import Count
from django.http import Http404

from lifecycle_app.jobs.models import Job
from lifecycle_app.projects.models import Project
from lifecycle_app.projects.selectors import MAX_ID
from lifecycle_app.stages.align.models import FeedbackItem, FeedbackRound, PreferenceSet, Rating


def feedback_rounds(*, project: Project) -> list[FeedbackRound]:
    return list(
        FeedbackRound.objects.filter(project=project).annotate(
            n_items=Count("items", distinct=True),
            n_ratings=Count("items__ratings", distinct=True),
        )
    )


def feedback_round_get(*, project: Project, round_id: int) -> FeedbackRound:
    rnd = (
        FeedbackRound.objects.filter(project=project, id=round_id).first()
        if 0 < round_id <= MAX_ID
        else None
    )
    if rnd is None:
        raise Http404("No such rating round.")
    return rnd


def round_ratings(*, rnd: FeedbackRound) -> list[Rating]:
    return list(Rating.objects.filter(item__round=rnd).select_related("rater"))


def next_item_to_rate(*, rnd: FeedbackRound, user: User) -> FeedbackItem | None:
    """The first item this rater has not rated yet."""
    return (
        FeedbackItem.objects.filter(round=rnd)
        .exclude(ratings__rater=user)
        .order_by("index")
        .first()
    )


def preference_sets(*, project: Project) -> list[PreferenceSet]:
    return list(PreferenceSet.objects.filter(project=project).annotate(n_pairs=Count("pairs")))


def preference_set_get(*, project: Project, set_id: int) -> PreferenceSet:
    pset = (
        PreferenceSet.objects.filter(project=project, id=set_id).first()
        if 0 < set_id <= MAX_ID
        else None
    )
    if pset is None:
        raise Http404("No such preference set.")
    return pset


def preference_set_of(*, job: Job) -> PreferenceSet | None:
    """The preference set an alignment run trained on (None once deleted)."""
    set_id = (job.params or {}).get("preference_set_id") or 0
    return PreferenceSet.objects.filter(id=set_id, project=job.project_id).first()


def sources_revealed(
    *, mine: int, total: int, per_rater: dict[int, int], can_manage: bool, can_write: bool
) -> bool:
    """Blind rating: may this person see which model wrote A and which wrote B?

    A rater sees the sources once they have rated every row, never before (they would sway
    the ratings). Someone who has not rated sees them only when everyone who started
    rating has finished, and only if they cannot rate (a viewer) or run the round (an
    owner); an editor who has not rated yet might still rate, so stays blind.
    """
    if total and mine >= total:
        return True
    if mine:
        return False
    everyone_finished = bool(per_rater) and all(n >= total for n in per_rater.values())
    return everyone_finished and (can_manage or not can_write)
