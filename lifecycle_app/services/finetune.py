"""Fine-tuning jobs: create, record curves and live figures, finish with an artifact and a
candidate model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from lifecycle_app.models import (
    Artifact,
    BaseModel,
    Dataset,
    Job,
    JobKind,
    JobStatus,
    MetricPoint,
    Project,
    StageKey,
)
from lifecycle_app.services.jobs import job_create, job_succeed
from lifecycle_app.services.projects import stage_step_save
from workers.ml.params import TrainParams

LOG_TAIL = 40
METHOD_LABELS = {"lora": "LoRA", "full": "full fine-tune", "prompt_tuning": "prompt tuning"}
ARTIFACT_KINDS = {"lora": "lora_adapter", "prompt_tuning": "prompt_adapter", "full": "model"}


def run_dir(job_id: int) -> Path:
    """Where a fine-tuning job's checkpoints and final weights live (shared storage)."""
    return Path(settings.JOBS_DIR) / str(job_id) / "run"


def finetune_create(
    *,
    project: Project,
    user: User,
    base_model: BaseModel,
    dataset: Dataset,
    params: TrainParams,
    total_steps: int,
) -> Job:
    """Queue a fine-tuning job (raises JobLimitReached when a submission limit is hit)."""
    with transaction.atomic():
        job = job_create(
            project=project,
            user=user,
            kind=JobKind.FINETUNE,
            base_model=base_model,
            dataset=dataset,
            params=params.model_dump(),
            progress_total=total_steps,
            progress_unit="steps",
        )
        stage_step_save(
            project=project,
            stage_key=StageKey.ADAPT,
            step_slug="fine-tune",
            answers={"last_run": job.id},
        )
    return job


def metric_record(*, job_id: int, step: int, values: dict[str, float]) -> None:
    """Store curve points; a resumed run writing a step again replaces its value."""
    for name, value in values.items():
        MetricPoint.objects.update_or_create(
            job_id=job_id, name=name, step=step, defaults={"value": float(value)}
        )


def finetune_live(*, job_id: int, step: int, total: int, live: dict[str, Any], line: str) -> None:
    """The dashboard's live figures and log tail, and measured progress (steps)."""
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(id=job_id, status=JobStatus.RUNNING).first()
        if job is None:
            return
        result = dict(job.result or {})
        result["live"] = live
        result["log"] = [*(result.get("log") or []), line][-LOG_TAIL:]
        Job.objects.filter(id=job_id).update(
            result=result,
            progress_done=step,
            progress_total=total,
            message=line[:300],
            heartbeat_at=timezone.now(),
        )


def finetune_log(*, job_id: int, line: str) -> None:
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(id=job_id).first()
        if job is None:
            return
        result = dict(job.result or {})
        result["log"] = [*(result.get("log") or []), line][-LOG_TAIL:]
        Job.objects.filter(id=job_id).update(result=result)


@transaction.atomic
def finetune_finish(
    *, job: Job, summary: dict[str, Any], final_dir: Path, files: list[dict[str, Any]]
) -> BaseModel:
    """Record the one final artifact and the candidate model, then succeed the job.

    Idempotent: a job finished twice (a redelivered task) still has one artifact and one
    candidate.
    """
    params = TrainParams(**job.params)
    label = METHOD_LABELS[params.method]
    losses = ", ".join(
        f"{name} {summary[key]:.3f}"
        for name, key in (
            ("train loss", "final_train_loss"),
            ("validation loss", "final_eval_loss"),
        )
        if summary.get(key) is not None
    )
    data = f"'{job.dataset.name}'" if job.dataset else "a deleted dataset"
    return trained_candidate_record(
        job=job,
        artifact_kind=ARTIFACT_KINDS[params.method],
        label=label,
        description=f"{label} of {{parent}} on {data} (job #{job.id}).",
        summary=summary,
        message=f"{summary.get('steps')} steps, {losses}",
        final_dir=final_dir,
        files=files,
        step_slug="fine-tune",
    )


def trained_candidate_record(
    *,
    job: Job,
    artifact_kind: str,
    label: str,
    description: str,
    summary: dict[str, Any],
    message: str,
    final_dir: Path,
    files: list[dict[str, Any]],
    step_slug: str,
) -> BaseModel:
    """The end of every training job (fine-tuning, alignment): one Artifact, one
    project-private candidate model whose parent is the job's model, the job succeeded and
    the wizard step marked done. Idempotent, so a redelivered task changes nothing.
    `description` may name the parent as {parent}."""
    parent = job.base_model
    assert parent is not None
    weights = max(
        (f for f in files if f["path"].endswith(".safetensors")),
        key=lambda f: f["size"],
        default=None,
    )
    Artifact.objects.update_or_create(
        job=job,
        kind=artifact_kind,
        defaults={
            "project": job.project,
            "path": str(final_dir),
            "size_bytes": sum(f["size"] for f in files),
            "sha256": weights["sha256"] if weights else "",
            "files": files,
        },
    )
    candidate, _ = BaseModel.objects.update_or_create(
        trained_by_job=job,
        defaults={
            "slug": f"{job.project.slug[:50]}-{'ft' if job.kind == JobKind.FINETUNE else job.kind}-{job.id}",
            "name": f"{parent.name} · {label} #{job.id}",
            "source": "local",
            "location": str(final_dir),
            "description": description.format(parent=parent.name),
            "licence": parent.licence,
            "family": parent.family,
            "architecture": parent.architecture,
            "n_params": parent.n_params,
            "context_length": parent.context_length,
            "n_layers": parent.n_layers,
            "hidden_size": parent.hidden_size,
            "vocab_size": parent.vocab_size,
            "weights_present": True,
            "shape": parent.shape,
            "is_test_model": parent.is_test_model,
            "project": job.project,
            "parent": parent,
        },
    )
    current = Job.objects.select_for_update().get(id=job.id)
    job_succeed(
        job_id=job.id,
        result={**(current.result or {}), "summary": summary, "candidate": candidate.slug},
        message=f"{message}; saved as {candidate.name}",
    )
    stage_step_save(
        project=job.project,
        stage_key=StageKey.ADAPT,
        step_slug=step_slug,
        answers={"succeeded_run": job.id},
    )
    return candidate
