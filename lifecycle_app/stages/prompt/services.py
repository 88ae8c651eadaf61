"""Prompt templates (versioned) and prompt trials (jobs over an evaluation split)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Max

from lifecycle_app.catalog.models import CatalogModel
from lifecycle_app.common.labels import versioned_name
from lifecycle_app.datasets.models import Dataset
from lifecycle_app.jobs.models import Job, JobKind
from lifecycle_app.jobs.services import job_create, job_succeed
from lifecycle_app.projects.activity import activity_record
from lifecycle_app.projects.models import ActivityVerb, Project, StageKey
from lifecycle_app.projects.services import stage_step_save
from lifecycle_app.projects.steps import StepSlug
from lifecycle_app.stages.prompt.models import ExampleStatus, PromptTemplate, TrialExample
from workers.ml.generation.batch import RowOutcome, TrialStats
from workers.ml.params import TrialParams
from workers.ml.prompts import BuiltPrompt

TEMPLATE_FIELDS = ("instruction", "example_format", "body", "use_chat_template", "shot_style")
# Fields a caller may leave out (the model's default then applies).
OPTIONAL_FIELDS = {"shot_style": "chat"}


class TemplateNameTaken(ValueError):
    pass


def template_create(
    *, project: Project, user: User, name: str, fields: dict[str, Any], note: str = ""
) -> PromptTemplate:
    name = name.strip()
    if PromptTemplate.objects.filter(project=project, name=name).exists():
        raise TemplateNameTaken(
            f"A template called '{name}' exists; edit it to make a new version, or pick "
            "another name."
        )
    try:
        with transaction.atomic():
            template = PromptTemplate.objects.create(
                project=project,
                name=name,
                version=1,
                note=note,
                created_by=user,
                **_template_values(fields),
            )
            _record_template(template, user)
    except IntegrityError as exc:  # someone saved the same name a moment ago
        raise TemplateNameTaken(f"A template called '{name}' was just created.") from exc
    return template


def _template_values(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: fields.get(k, OPTIONAL_FIELDS.get(k)) for k in TEMPLATE_FIELDS}


def _record_template(template: PromptTemplate, user: User) -> None:
    activity_record(
        project=template.project_id,
        actor=user,
        verb=ActivityVerb.TEMPLATE_SAVED,
        description=f"saved prompt template '{versioned_name(template.name, template.version)}'",
    )


@transaction.atomic
def template_revise(
    *, template: PromptTemplate, user: User, fields: dict[str, Any], note: str = ""
) -> PromptTemplate:
    """Save an edit as the next version; an edit that changes nothing makes no version."""
    latest = (
        PromptTemplate.objects.select_for_update()
        .filter(project_id=template.project_id, name=template.name)
        .order_by("-version")
        .first()
    )
    assert latest is not None
    values = _template_values(fields)
    if all(getattr(latest, k) == values[k] for k in TEMPLATE_FIELDS):
        return latest
    top = PromptTemplate.objects.filter(
        project_id=template.project_id, name=template.name
    ).aggregate(top=Max("version"))["top"]
    revised = PromptTemplate.objects.create(
        project_id=template.project_id,
        name=template.name,
        version=(top or 0) + 1,
        note=note,
        created_by=user,
        **values,
    )
    _record_template(revised, user)
    return revised


def trial_create(
    *,
    project: Project,
    user: User,
    base_model: CatalogModel,
    dataset: Dataset,
    template: PromptTemplate,
    params: TrialParams,
    rows: int,
) -> Job:
    """Queue a trial over `rows` rows (what the preflight found, at most params.n_rows).

    Raises JobLimitReached (creating nothing) when the submission limits are reached.
    """
    with transaction.atomic():
        job = job_create(
            project=project,
            user=user,
            kind=JobKind.TRIAL,
            base_model=base_model,
            dataset=dataset,
            prompt_template=template,
            params=params.model_dump(),
            progress_total=rows,
            progress_unit="rows",
        )
        stage_step_save(
            project=project,
            stage_key=StageKey.ADAPT,
            step_slug=StepSlug.PROMPT,
            answers={"last_trial": job.id},
        )
    return job


def trial_succeed(*, job_id: int, result: dict[str, Any], message: str) -> None:
    """Finish a trial as succeeded and mark the Prompt step done with it."""
    with transaction.atomic():
        if job_succeed(job_id=job_id, result=result, message=message):
            job = Job.objects.select_related("project").get(id=job_id)
            stage_step_save(
                project=job.project,
                stage_key=StageKey.ADAPT,
                step_slug=StepSlug.PROMPT,
                answers={"succeeded_trial": job.id},
            )


@transaction.atomic
def trial_mark_best(*, project: Project, job: Job, user: User) -> None:
    stage_step_save(
        project=project,
        stage_key=StageKey.ADAPT,
        step_slug=StepSlug.PROMPT,
        answers={"best_trial": job.id},
    )
    activity_record(
        project=project,
        actor=user,
        verb=ActivityVerb.BEST_TRIAL,
        description=f"marked prompt trial #{job.id} as the best prompt",
        job=job,
    )


# --- Worker side ------------------------------------------------------------------------


@transaction.atomic
def trial_examples_init(*, job_id: int, prompts: Sequence[BuiltPrompt]) -> None:
    """Write every row as pending (or skipped, with the reason) before generation starts.

    A retried job starts over: rows of an earlier attempt are replaced.
    """
    TrialExample.objects.filter(job_id=job_id).delete()
    TrialExample.objects.bulk_create(
        TrialExample(
            job_id=job_id,
            index=p.index,
            line=p.line,
            input=p.input,
            prompt=p.text,
            reference=p.reference,
            prompt_tokens=p.tokens,
            truncated=p.truncated,
            status=ExampleStatus.SKIPPED if p.skipped else ExampleStatus.PENDING,
            error=p.skipped,
        )
        for p in prompts
    )


def trial_summary(stats: TrialStats, **extra: Any) -> dict[str, Any]:
    return {**stats.as_dict(), **extra}


@transaction.atomic
def trial_record_batch(
    *, job_id: int, outcomes: Sequence[RowOutcome], stats: TrialStats, extra: dict[str, Any]
) -> None:
    """Store one batch's rows and the running totals (partial results while it runs)."""
    for o in outcomes:
        TrialExample.objects.filter(job_id=job_id, index=o.index).update(
            status=o.status,
            output=o.output,
            output_tokens=o.output_tokens,
            finish_reason=o.finish_reason,
            scores=o.scores,
            error=o.error,
        )
    finished = stats.rows_done + stats.rows_failed
    Job.objects.filter(id=job_id).update(
        result=trial_summary(stats, **extra),
        progress_done=finished + stats.rows_skipped,
        message=f"Generated {finished} of {stats.rows_total - stats.rows_skipped} rows",
    )
