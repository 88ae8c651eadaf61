"""Recording a trained model (fine-tuned or aligned) as a candidate of its project.

Shared by the stages that train: fine-tuning and alignment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lifecycle_app.catalog.models import Artifact, CatalogModel
from lifecycle_app.jobs.models import Job, JobKind
from lifecycle_app.jobs.services import job_succeed
from lifecycle_app.projects.models import StageKey
from lifecycle_app.projects.services import stage_step_save


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
) -> CatalogModel:
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
    candidate, _ = CatalogModel.objects.update_or_create(
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
