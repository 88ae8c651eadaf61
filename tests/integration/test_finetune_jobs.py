"""Fine-tuning in a real worker: a LoRA run of the tiny model on the sample dialogues
finishes with curves, one artifact and a candidate; Cancel stops it within one step,
keeps nothing half-written, and the worker goes on to the next job."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth.models import User

from lifecycle_app.jobs.services import job_cancel
from lifecycle_app.models import (
    Artifact,
    CatalogModel,
    Dataset,
    Job,
    JobKind,
    JobStatus,
    MetricPoint,
    PreferencePair,
    PreferenceSet,
    Project,
)
from lifecycle_app.stages.align.services import align_create
from lifecycle_app.stages.prompt.playground import job_create_generate
from tests.integration.conftest import WorkerProcess, wait_for_job
from tests.integration.sample_data import sample_dialogues, start_finetune
from workers.ml.params import AlignParams, GenerateParams
from workers.ml.training import common, sft

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def dialogues(
    shared_storage: Path, project: Project, owner: User, tmp_path: Path, tiny_folder: Path
) -> Dataset:
    return sample_dialogues(project, owner, tmp_path / "uploads", fractions=(0.8, 0.1, 0.1))


def run_folder(worker: WorkerProcess, job: Job) -> Path:
    """The first attempt's training folder (each attempt writes into its own)."""
    return worker.log_path.parent / "var" / "jobs" / str(job.id) / "attempt-1" / "run"


def test_a_lora_run_finishes_with_curves_an_artifact_and_a_candidate(
    live_worker: WorkerProcess,
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    dialogues: Dataset,
) -> None:
    job = start_finetune(
        project, owner, tiny_model, dialogues, max_steps=12, eval_every=6, checkpoint_every=5
    )

    job = wait_for_job(job.id, timeout=120)

    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.progress_done == job.progress_total == 12
    summary = job.result["summary"]
    assert summary["steps"] == 12 and summary["device"] == "cpu"
    assert summary["tokens_per_s"] > 0
    points = MetricPoint.objects.filter(job=job)
    assert list(
        points.filter(name="train_loss").order_by("step").values_list("step", flat=True)
    ) == list(range(1, 13))
    evals = points.filter(name="val_loss").order_by("step").values_list("step", flat=True)
    assert list(evals) == [0, 6, 12]  # the untrained model first, as the baseline
    artifact = Artifact.objects.get(job=job)
    assert artifact.size_bytes > 0 and len(artifact.sha256) == 64
    folder = Path(artifact.path)
    assert (folder if folder.is_dir() else folder.parent).joinpath(sft.CONFIG_NAME).is_file()
    candidate = CatalogModel.objects.get(trained_by_job=job)
    assert candidate.project_id == project.id and candidate.parent_id == tiny_model.id


def test_cancel_stops_training_within_one_step_and_the_worker_takes_the_next_job(
    live_worker: WorkerProcess,
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    dialogues: Dataset,
) -> None:
    job = start_finetune(project, owner, tiny_model, dialogues, max_steps=2000, checkpoint_every=5)
    job = wait_for_job(job.id, lambda j: not j.is_active or j.progress_done >= 8, timeout=120)
    assert job.status == JobStatus.RUNNING, job.error

    job_cancel(job=job, actor=owner)
    # The cancel flag is committed; whatever step was in flight may still finish.
    seen_after_cancel = Job.objects.get(id=job.id).progress_done
    job = wait_for_job(job.id, timeout=30)

    assert job.status == JobStatus.CANCELLED
    stopped_at = job.result["summary"]["steps"]
    assert seen_after_cancel <= stopped_at <= seen_after_cancel + 1
    assert stopped_at < 2000
    # Nothing half-written: complete checkpoints only, no final weights, no artifact.
    run = run_folder(live_worker, job)
    assert not (run / "final").exists()
    assert all(p.name.startswith("step-") for p in (run / "checkpoints").iterdir())
    assert all((p / common.STATE_NAME).is_file() for p in (run / "checkpoints").iterdir())
    assert not Artifact.objects.filter(job=job).exists()
    assert not CatalogModel.objects.filter(trained_by_job=job).exists()

    # The same worker is free for the next job.
    nxt = job_create_generate(
        project=project,
        user=owner,
        base_model=tiny_model,
        params=GenerateParams(model_ref=tiny_model.slug, prompt="Hello", max_new_tokens=4),
    )
    nxt = wait_for_job(nxt.id)
    assert nxt.status == JobStatus.SUCCEEDED, nxt.error
    assert nxt.worker == live_worker.hostname


def test_an_alignment_job_trains_dpo_in_the_worker_and_leaves_a_candidate(
    live_worker: WorkerProcess,
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    tiny_folder: Path,
) -> None:
    pset = PreferenceSet.objects.create(project=project, name="Polite", source="import")
    PreferencePair.objects.bulk_create(
        PreferencePair(
            preference_set=pset,
            index=i,
            prompt=f"Reply to message {i}:",
            chosen=f"Thanks for message {i}, happy to help.",
            rejected=f"Message {i}? Go away.",
        )
        for i in range(12)
    )
    params = AlignParams(
        model_ref=tiny_model.slug,
        preference_set_id=pset.id,
        max_steps=6,
        batch_size=4,
        max_length=64,
        checkpoint_every=3,
        learning_rate=1e-3,
    )
    job = align_create(project=project, user=owner, base_model=tiny_model, params=params)

    job = wait_for_job(job.id, timeout=180)

    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.kind == JobKind.ALIGN and job.progress_done == 6
    preference = job.result["preference"]
    assert preference["before"]["pairs"] == preference["after"]["pairs"] == 2
    assert job.result["summary"]["steps"] == 6
    steps = MetricPoint.objects.filter(job=job, name="train_loss").values_list("step", flat=True)
    assert sorted(steps) == [1, 2, 3, 4, 5, 6]
    artifact = Artifact.objects.get(job=job)
    assert artifact.kind == "dpo_adapter"
    candidate = CatalogModel.objects.get(trained_by_job=job)
    assert candidate.parent_id == tiny_model.id and candidate.project_id == project.id
