"""Human feedback and alignment: rating rounds from two prompt trials, ratings,
preference sets (built from ratings or imported), and DPO jobs with their candidate."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction

from lifecycle_app.catalog.models import CatalogModel
from lifecycle_app.catalog.trained import trained_candidate_record
from lifecycle_app.jobs.models import Job, JobKind
from lifecycle_app.jobs.services import job_create
from lifecycle_app.projects.activity import activity_record
from lifecycle_app.projects.models import ActivityVerb, Project, StageKey
from lifecycle_app.projects.services import stage_step_save
from lifecycle_app.projects.steps import StepSlug
from lifecycle_app.stages.align import agreement as feedback
from lifecycle_app.stages.align.models import (
    Choice,
    FeedbackItem,
    FeedbackRound,
    PreferencePair,
    PreferenceSet,
    Rating,
)
from lifecycle_app.stages.prompt.models import ExampleStatus, TrialExample
from lifecycle_app.stages.prompt.selectors import trial_label
from workers.ml.params import AlignParams

MAX_ROUND_ITEMS = 500


class FeedbackError(Exception):
    """A request the data cannot satisfy; the message is for the person who asked."""


@transaction.atomic
def round_create(
    *, project: Project, user: User, name: str, trial_a: Job, trial_b: Job, max_items: int
) -> FeedbackRound:
    """A round over the rows both trials answered with the same prompt (DPO needs one
    prompt per pair), in a seeded random order, at most `max_items` of them."""
    if trial_a.id == trial_b.id:
        raise FeedbackError("Pick two different trials (two candidates, or two sampled runs).")
    for trial in (trial_a, trial_b):
        if trial.project_id != project.id or trial.kind != JobKind.TRIAL:
            raise FeedbackError("Both trials must be prompt trials of this project.")
    done_a = {
        e.line: e for e in TrialExample.objects.filter(job=trial_a, status=ExampleStatus.DONE)
    }
    done_b = {
        e.line: e for e in TrialExample.objects.filter(job=trial_b, status=ExampleStatus.DONE)
    }
    common = sorted(set(done_a) & set(done_b))
    if not common:
        raise FeedbackError(
            "The two trials have no row in common with an output: run both on the same "
            "split and rows."
        )
    same_prompt = [line for line in common if done_a[line].prompt == done_b[line].prompt]
    if not same_prompt:
        raise FeedbackError(
            "The two trials sent different prompts for every row (a different template or "
            "shots). A preference pair needs one prompt: compare two models with the same "
            "template and shots, or two sampled runs of one trial's settings."
        )
    random.Random(0).shuffle(same_prompt)
    lines = same_prompt[:max_items]
    rnd = FeedbackRound.objects.create(
        project=project,
        name=name.strip()[:120] or f"Trial #{trial_a.id} vs #{trial_b.id}",
        trial_a=trial_a,
        trial_b=trial_b,
        label_a=trial_label(trial_a)[:200],
        label_b=trial_label(trial_b)[:200],
        created_by=user,
    )
    FeedbackItem.objects.bulk_create(
        FeedbackItem(
            round=rnd,
            index=i,
            line=line,
            input=done_a[line].input,
            prompt=done_a[line].prompt,
            completion_a=done_a[line].output,
            completion_b=done_b[line].output,
        )
        for i, line in enumerate(lines)
    )
    activity_record(
        project=project,
        actor=user,
        verb=ActivityVerb.FEEDBACK_ROUND,
        description=f"started the rating round '{rnd.name}' ({len(lines)} rows)",
    )
    return rnd


def rating_save(*, item: FeedbackItem, rater: User, side: str, comment: str = "") -> Rating:
    """Store what the rater picked on screen ("left", "right", "tie", "both_bad"), as A/B."""
    if side in ("left", "right"):
        left_is_a = feedback.a_on_left(item.id, rater.id)
        choice = Choice.A if (side == "left") == left_is_a else Choice.B
    elif side in (Choice.TIE, Choice.BOTH_BAD):
        choice = Choice(side)
    else:
        raise FeedbackError("Pick the better answer, a tie, or both bad.")
    rating, _ = Rating.objects.update_or_create(
        item=item, rater=rater, defaults={"choice": choice, "comment": comment.strip()[:2000]}
    )
    return rating


@transaction.atomic
def preference_set_from_round(*, rnd: FeedbackRound, user: User, name: str) -> PreferenceSet:
    """One pair per item the raters' majority decided (A or B); ties, "both bad" and
    even splits give no pair."""
    pairs: list[tuple[str, str, str]] = []
    skipped = 0
    items = FeedbackItem.objects.filter(round=rnd).prefetch_related("ratings")
    rated = 0
    for item in items:
        votes = [r.choice for r in item.ratings.all()]
        if not votes:
            continue
        rated += 1
        winner = feedback.majority(votes)
        if winner is None:
            skipped += 1
            continue
        chosen, rejected = (
            (item.completion_a, item.completion_b)
            if winner == "a"
            else (item.completion_b, item.completion_a)
        )
        if chosen.strip() == rejected.strip():
            skipped += 1
            continue
        pairs.append((item.prompt, chosen, rejected))
    if not pairs:
        raise FeedbackError(
            "No rated row has a majority for one answer yet: rate more rows (ties and "
            "'both bad' give no pair)."
        )
    note = f"{len(pairs)} pairs from {rated} rated rows; {skipped} without a majority"
    return _save_set(
        project=rnd.project,
        user=user,
        name=name or f"{rnd.name} preferences",
        source="ratings",
        rnd=rnd,
        note=note,
        pairs=pairs,
    )


def _save_set(
    *,
    project: Project,
    user: User,
    name: str,
    source: str,
    note: str,
    pairs: list[tuple[str, str, str]],
    rnd: FeedbackRound | None = None,
) -> PreferenceSet:
    pset = PreferenceSet.objects.create(
        project=project,
        name=name.strip()[:120],
        source=source,
        round=rnd,
        note=note[:300],
        created_by=user,
    )
    PreferencePair.objects.bulk_create(
        PreferencePair(preference_set=pset, index=i, prompt=p, chosen=c, rejected=r)
        for i, (p, c, r) in enumerate(pairs)
    )
    activity_record(
        project=project,
        actor=user,
        verb=ActivityVerb.PREFERENCES_SAVED,
        description=f"saved the preference set '{pset.name}' ({len(pairs)} pairs)",
    )
    return pset


class ImportProblems(FeedbackError):
    def __init__(self, problems: list[feedback.LineProblem]) -> None:
        super().__init__(f"{len(problems)} problem(s) in the file")
        self.problems = problems


@transaction.atomic
def preference_set_import(
    *, project: Project, user: User, name: str, data: bytes, filename: str
) -> PreferenceSet:
    """Every line must be a good pair; otherwise nothing is saved and each bad line is
    reported, so the file can be fixed and uploaded again."""
    pairs, problems = feedback.parse_pairs(data)
    if problems:
        raise ImportProblems(problems)
    return _save_set(
        project=project,
        user=user,
        name=name or Path(filename).stem or "Imported preferences",
        source="import",
        note=f"{len(pairs)} pairs imported from {filename}"[:300],
        pairs=[(p["prompt"], p["chosen"], p["rejected"]) for p in pairs],
    )


def align_create(
    *, project: Project, user: User, base_model: CatalogModel, params: AlignParams
) -> Job:
    with transaction.atomic():
        job = job_create(
            project=project,
            user=user,
            kind=JobKind.ALIGN,
            base_model=base_model,
            params=params.model_dump(),
            progress_total=params.max_steps,
            progress_unit="steps",
        )
        stage_step_save(
            project=project,
            stage_key=StageKey.ADAPT,
            step_slug=StepSlug.ALIGN,
            answers={"last_run": job.id},
        )
    return job


def align_pairs(*, job: Job) -> list[dict[str, str]]:
    params = AlignParams(**job.params)
    rows = PreferencePair.objects.filter(
        preference_set_id=params.preference_set_id, preference_set__project=job.project_id
    )
    return [{"prompt": r.prompt, "chosen": r.chosen, "rejected": r.rejected} for r in rows]


@transaction.atomic
def align_finish(
    *, job: Job, summary: dict[str, Any], final_dir: Path, files: list[dict[str, Any]]
) -> CatalogModel:
    params = AlignParams(**job.params)
    pset = PreferenceSet.objects.filter(id=params.preference_set_id).first()
    before, after = summary.get("before") or {}, summary.get("after") or {}
    accuracy = (
        f"held-out preference accuracy {before.get('accuracy', 0):.0%} → "
        f"{after.get('accuracy', 0):.0%}"
    )
    return trained_candidate_record(
        job=job,
        artifact_kind="dpo_adapter",
        label="DPO",
        description=(
            f"DPO (beta {params.beta}) of {{parent}} on the preference set "
            f"'{pset.name if pset else 'deleted'}' (job #{job.id})."
        ),
        summary=summary,
        message=f"{summary.get('steps')} steps, {accuracy}",
        final_dir=final_dir,
        files=files,
        step_slug=StepSlug.ALIGN,
    )
