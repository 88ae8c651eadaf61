"""Optimize and deploy: export jobs and their variants, the deployed variant, API tokens.

Writes only; the serving round trip lives in lifecycle_app/serving.py.
"""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from lifecycle_app.catalog.models import Artifact, CatalogModel
from lifecycle_app.datasets.models import Dataset
from lifecycle_app.jobs.models import Job, JobKind
from lifecycle_app.jobs.services import job_create, job_succeed
from lifecycle_app.projects.activity import activity_record
from lifecycle_app.projects.models import ActivityVerb, Project, StageKey
from lifecycle_app.projects.services import stage_step_save
from lifecycle_app.projects.steps import StepSlug
from lifecycle_app.stages.deploy.models import ONNX_KINDS, ApiToken, ModelVariant, VariantKind
from workers.ml.params import ExportParams

TOKEN_PREFIX = "lcs_"
EXPORT_STEPS = 6  # load+merge, convert, checksums, measure parent, measure variant, bundle


def export_create(
    *,
    project: Project,
    user: User,
    source: CatalogModel,
    dataset: Dataset | None,
    params: ExportParams,
) -> Job:
    """Queue an export job (raises JobLimitReached when a submission limit is hit)."""
    with transaction.atomic():
        job = job_create(
            project=project,
            user=user,
            kind=JobKind.EXPORT,
            base_model=source,
            dataset=dataset,
            params=params.model_dump(),
            progress_total=EXPORT_STEPS,
            progress_unit="steps",
        )
        stage_step_save(
            project=project,
            stage_key=StageKey.INTEGRATE,
            step_slug=StepSlug.DEPLOY,
            answers={"last_export": job.id},
        )
    return job


def card_info(job: Job) -> dict[str, Any]:
    """What the model card says about the model an export job starts from."""
    source = job.base_model
    assert source is not None
    params = ExportParams(**job.params)
    root = source
    while root.parent_id is not None and root.parent is not None:
        root = root.parent
    info: dict[str, Any] = {
        "name": f"{source.name} · {VariantKind(params.kind).label}",
        "description": source.description,
        "variant": VariantKind(params.kind).label,
        "base_model": root.name,
        "parent": source.name,
        "architecture": source.architecture,
        "n_params": f"{source.n_params:,}" if source.n_params else "",
        "licence": source.licence,
        "exported_at": timezone.now().strftime("%Y-%m-%d %H:%M UTC"),
        "method": "base model, not fine-tuned",
    }
    trained = source.trained_by_job
    if trained is not None:
        info["method"] = str(trained.params.get("method", ""))
        info["dataset"] = trained.dataset.name if trained.dataset else ""
        # The weights' licence is the base model's; what they were trained on has its own.
        info["dataset_licence"] = (
            (trained.dataset.licence or "not stated by the uploader") if trained.dataset else ""
        )
        info["hyperparameters"] = {
            k: v for k, v in trained.params.items() if k not in ("template", "model_ref")
        }
    # The template the model was trained with, else the one the export measures it with:
    # what `/v1/chat/completions` puts the user's text into (deploy/serving.py).
    trained_template = trained.params.get("template") if trained is not None else None
    if isinstance(trained_template, dict):
        info["template"] = trained_template
    elif params.template is not None:
        info["template"] = params.template.model_dump()
    return info


@transaction.atomic
def export_finish(
    *,
    job: Job,
    out_dir: Path,
    bundle: Path | None,
    files: list[dict[str, Any]],
    measurements: dict[str, Any],
    weights_sha256: str,
) -> ModelVariant:
    """Record the artifact, the variant and (when loadable) its candidate; succeed the job.

    Idempotent: a redelivered job finishing twice still has one of each.
    """
    params = ExportParams(**job.params)
    source = job.base_model
    assert source is not None
    kind = VariantKind(params.kind)
    Artifact.objects.update_or_create(
        job=job,
        kind=f"variant_{kind.value}",
        defaults={
            "project": job.project,
            "path": str(out_dir),
            "size_bytes": sum(f["size"] for f in files),
            "sha256": weights_sha256,
            "files": files,
        },
    )
    candidate = None
    if kind not in ONNX_KINDS:
        short = {
            "safetensors": "merged" if source.trained_by_job_id else "export",
            "int8": "int8 dynamic",
            "int8_weight": "int8 weight-only",
        }
        candidate, _ = CatalogModel.objects.update_or_create(
            slug=f"{job.project.slug[:50]}-{kind.value}-{job.id}",
            defaults={
                "name": f"{source.name} · {short[kind.value]} #{job.id}",
                "source": "local",
                "location": str(out_dir),
                "description": f"{kind.label} of {source.name} (export job #{job.id}).",
                "licence": source.licence,
                "family": source.family,
                "architecture": source.architecture,
                "n_params": source.n_params,
                "context_length": source.context_length,
                "n_layers": source.n_layers,
                "hidden_size": source.hidden_size,
                "vocab_size": source.vocab_size,
                "weights_present": True,
                "shape": source.shape,
                "is_test_model": source.is_test_model,
                "project": job.project,
                "parent": source,
            },
        )
    variant, _ = ModelVariant.objects.update_or_create(
        job=job,
        defaults={
            "project": job.project,
            "kind": kind,
            "parent": source,
            "candidate": candidate,
            "path": str(out_dir),
            "bundle_path": str(bundle) if bundle else "",
            "measurements": measurements,
        },
    )
    v, p = measurements.get("variant") or {}, measurements.get("parent") or {}
    summary = f"{kind.label}: {v.get('size_bytes', 0) / 2**20:.1f} MB"
    if p.get("size_bytes"):
        summary += f" ({v.get('size_bytes', 0) / p['size_bytes']:.0%} of the parent)"
    if v.get("tokens_per_s") and p.get("tokens_per_s"):
        summary += f", {v['tokens_per_s'] / p['tokens_per_s']:.2f}x tokens/s"
    current = Job.objects.select_for_update().get(id=job.id)
    job_succeed(
        job_id=job.id,
        result={**(current.result or {}), "variant": variant.id, "measurements": measurements},
        message=summary,
    )
    return variant


@transaction.atomic
def variant_deploy(*, project: Project, variant: ModelVariant, actor: User) -> ModelVariant:
    """Make `variant` the one the project's API serves (one per project)."""
    if not variant.servable:
        raise ValueError(f"A {variant.get_kind_display()} variant cannot be served.")
    list(Project.objects.select_for_update().filter(id=project.id).values_list("id"))
    ModelVariant.objects.filter(project=project, deployed_at__isnull=False).exclude(
        id=variant.id
    ).update(deployed_at=None)
    if variant.deployed_at is None:
        variant.deployed_at = timezone.now()
        variant.save(update_fields=["deployed_at"])
        activity_record(
            project=project,
            actor=actor,
            verb=ActivityVerb.VARIANT_DEPLOYED,
            description=f"deployed {variant.candidate.name if variant.candidate else variant}",
        )
    stage_step_save(
        project=project,
        stage_key=StageKey.INTEGRATE,
        step_slug=StepSlug.DEPLOY,
        answers={"deployed_variant": variant.id},
    )
    return variant


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def api_token_create(*, project: Project, actor: User, name: str) -> tuple[ApiToken, str]:
    """A new token; the raw value is returned once and never stored."""
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        token = ApiToken.objects.create(
            project=project,
            name=name.strip()[:80] or "API token",
            prefix=raw[:10],
            token_hash=hash_token(raw),
            created_by=actor,
        )
        activity_record(
            project=project,
            actor=actor,
            verb=ActivityVerb.TOKEN_CREATED,
            description=f"created API token '{token.name}' ({token.prefix}…)",
        )
    return token, raw


def api_token_revoke(*, token: ApiToken, actor: User) -> ApiToken:
    with transaction.atomic():
        updated = ApiToken.objects.filter(id=token.id, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        if updated:
            activity_record(
                project=token.project_id,
                actor=actor,
                verb=ActivityVerb.TOKEN_REVOKED,
                description=f"revoked API token '{token.name}' ({token.prefix}…)",
            )
    token.refresh_from_db()
    return token


def api_token_touch(*, token: ApiToken) -> None:
    """Record use, at most once a minute per token (a write per request would cost)."""
    now = timezone.now()
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(id=token.id).update(last_used_at=now)
