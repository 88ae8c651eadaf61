"""Run again and Resume: the way back from a failed or cancelled job.

- **Run again** makes a new job of the same kind with the same settings and inputs
  (model, dataset, template, candidates) through the stage's own create service, so
  submission limits, activity and step bookkeeping are the usual ones. The old job stays
  as it was, for comparison.
- **Resume** puts a failed fine-tuning or alignment run back in the queue; it continues
  from its last checkpoint (jobs.services.job_resume).

This lives in the wizard layer because it must know every stage's create service; the
job engine knows no stage.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.http import HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from lifecycle_app.common.http import HtmxHttpRequest, authed_user
from lifecycle_app.datasets.profiling import job_create_profile
from lifecycle_app.jobs import selectors
from lifecycle_app.jobs.models import Job, JobKind, JobStatus
from lifecycle_app.jobs.services import RESUMABLE_KINDS, JobLimitReached, job_resume
from lifecycle_app.projects import selectors as projects_selectors
from lifecycle_app.stages.align.services import align_create
from lifecycle_app.stages.deploy.services import export_create
from lifecycle_app.stages.evaluate.models import EvaluationCandidate
from lifecycle_app.stages.evaluate.services import evaluation_create
from lifecycle_app.stages.finetune.services import finetune_create
from lifecycle_app.stages.integrate.knowledge.services import knowledge_index_start
from lifecycle_app.stages.prompt.playground import job_create_generate
from lifecycle_app.stages.prompt.services import trial_create
from lifecycle_app.storage import StoreError, is_remote, store
from workers.ml.params import (
    AlignParams,
    EvaluateParams,
    ExportParams,
    GenerateParams,
    TrainParams,
    TrialParams,
)


class CannotRunAgain(Exception):
    """The job's inputs are gone; the message says which."""


def _need(value: object, what: str) -> None:
    if value is None:
        raise CannotRunAgain(f"The {what} of this job was deleted, so it cannot run again.")


def _trial(job: Job, user: User) -> Job:
    _need(job.base_model, "model")
    _need(job.dataset, "dataset")
    _need(job.prompt_template, "prompt template")
    params = TrialParams(**job.params)
    return trial_create(
        project=job.project,
        user=user,
        base_model=job.base_model,  # type: ignore[arg-type]
        dataset=job.dataset,  # type: ignore[arg-type]
        template=job.prompt_template,  # type: ignore[arg-type]
        params=params,
        rows=job.progress_total or params.n_rows,
    )


def _finetune(job: Job, user: User) -> Job:
    _need(job.base_model, "model")
    _need(job.dataset, "dataset")
    return finetune_create(
        project=job.project,
        user=user,
        base_model=job.base_model,  # type: ignore[arg-type]
        dataset=job.dataset,  # type: ignore[arg-type]
        params=TrainParams(**job.params),
        total_steps=job.progress_total,
    )


def _align(job: Job, user: User) -> Job:
    _need(job.base_model, "model")
    return align_create(
        project=job.project,
        user=user,
        base_model=job.base_model,  # type: ignore[arg-type]
        params=AlignParams(**job.params),
    )


def _evaluate(job: Job, user: User) -> Job:
    _need(job.dataset, "dataset")
    candidates = list(EvaluationCandidate.objects.filter(job=job).order_by("position"))
    params = EvaluateParams(**job.params)
    return evaluation_create(
        project=job.project,
        user=user,
        dataset=job.dataset,  # type: ignore[arg-type]
        params=params,
        sources=[(c.base_model, c.source_job) for c in candidates],
        rows=job.progress_total // max(len(candidates), 1),
    )


def _export(job: Job, user: User) -> Job:
    _need(job.base_model, "model")
    return export_create(
        project=job.project,
        user=user,
        source=job.base_model,  # type: ignore[arg-type]
        dataset=job.dataset,
        params=ExportParams(**job.params),
    )


def _generate(job: Job, user: User) -> Job:
    _need(job.base_model, "model")
    return job_create_generate(
        project=job.project,
        user=user,
        base_model=job.base_model,  # type: ignore[arg-type]
        params=GenerateParams(**job.params),
    )


def _profile(job: Job, user: User) -> Job:
    _need(job.base_model, "model")
    _need(job.dataset, "dataset")
    return job_create_profile(
        project=job.project,
        user=user,
        dataset=job.dataset,  # type: ignore[arg-type]
        base_model=job.base_model,  # type: ignore[arg-type]
    )


def _index(job: Job, user: User) -> Job:
    """The same chunking and model over the knowledge base's documents as they are now."""
    _need(job.base_model, "model")
    try:
        index = knowledge_index_start(
            project=job.project,
            user=user,
            tokenizer_model=job.base_model,
            chunk_size=job.params["chunk_size"],
            chunk_overlap=job.params["chunk_overlap"],
        )
    except ValueError as exc:  # no documents left
        raise CannotRunAgain(f"This index cannot be built again: {exc}.") from None
    assert index.job is not None
    return index.job


RUN_AGAIN: dict[str, Callable[[Job, User], Job]] = {
    JobKind.TRIAL: _trial,
    JobKind.FINETUNE: _finetune,
    JobKind.ALIGN: _align,
    JobKind.EVALUATE: _evaluate,
    JobKind.EXPORT: _export,
    JobKind.GENERATE: _generate,
    JobKind.PROFILE: _profile,
    JobKind.INDEX: _index,
}


def has_checkpoint(job: Job) -> bool:
    """Whether any attempt of a training job left a complete checkpoint to resume from (in
    the artifact store when it is remote: the web host has no worker's files). Raises
    StoreError when the store cannot be asked."""
    if is_remote():
        return any("/run/checkpoints/" in k for k in store().published_folders(f"jobs/{job.id}"))
    root = Path(settings.JOBS_DIR) / str(job.id)
    folders = [*root.glob("attempt-*/run/checkpoints"), root / "run" / "checkpoints"]
    return any(
        child.is_dir() and not child.name.startswith(".")
        for folder in folders
        if folder.is_dir()
        for child in folder.iterdir()
    )


@login_required
@require_POST
def job_run_again(request: HtmxHttpRequest, slug: str, job_id: int) -> HttpResponse:
    project, _ = projects_selectors.project_get_for_user(user=request.user, slug=slug, write=True)
    job = selectors.job_get_for_user(project=project, job_id=job_id)
    run_again = RUN_AGAIN.get(job.kind)
    if job.status not in (JobStatus.FAILED, JobStatus.CANCELLED) or run_again is None:
        messages.error(request, "Only a failed or cancelled job can be run again.")
        return redirect("job_detail", slug=project.slug, job_id=job.id)
    try:
        new = run_again(job, authed_user(request))
    except (CannotRunAgain, JobLimitReached) as exc:
        messages.error(request, str(exc))
        return redirect("job_detail", slug=project.slug, job_id=job.id)
    messages.success(request, f"Started job #{new.id} with the settings of #{job.id}.")
    return redirect("job_detail", slug=project.slug, job_id=new.id)


def _checkpoint_or_message(request: HtmxHttpRequest, job: Job) -> bool | None:
    """has_checkpoint, or None (with the store's message shown) when the store is down."""
    try:
        return has_checkpoint(job)
    except StoreError as exc:
        messages.error(request, str(exc))
        return None


@login_required
@require_POST
def job_resume_view(request: HtmxHttpRequest, slug: str, job_id: int) -> HttpResponse:
    project, _ = projects_selectors.project_get_for_user(user=request.user, slug=slug, write=True)
    job = selectors.job_get_for_user(project=project, job_id=job_id)
    if job.status != JobStatus.FAILED or job.kind not in RESUMABLE_KINDS:
        messages.error(request, "Only a failed fine-tuning or alignment run can be resumed.")
    elif not (found := _checkpoint_or_message(request, job)):
        if found is False:
            messages.error(
                request, "This run saved no checkpoint to resume from; use Run again instead."
            )
    else:
        try:
            job_resume(job=job, actor=authed_user(request))
            messages.success(request, f"Job #{job.id} resumes from its last checkpoint.")
        except JobLimitReached as exc:
            messages.error(request, str(exc))
    return redirect("job_detail", slug=project.slug, job_id=job.id)
