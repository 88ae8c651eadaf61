"""Multi-process training in a real worker: two gloo processes launched by the task
through torchrun train the tiny model to the loss curve of one process with the same
global batch, rank 0 alone writes checkpoints and the one artifact; Cancel stops both
processes within one step; SIGKILL of one rank ends the attempt and the job resumes from
its last checkpoint and finishes; alignment (DPO) runs on two processes too."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import transaction

from lifecycle_app.jobs.services import job_cancel
from lifecycle_app.models import (
    Artifact,
    CatalogModel,
    Dataset,
    Job,
    JobStatus,
    MetricPoint,
    PreferencePair,
    PreferenceSet,
    Project,
)
from lifecycle_app.stages.align.services import align_create
from lifecycle_app.stages.finetune.services import finetune_create
from tests.integration.conftest import WorkerProcess, wait_for_job
from tests.integration.sample_data import sample_dialogues, start_finetune
from workers.ml.params import AlignParams, TrainParams
from workers.ml.training import distributed as ddp

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# No dropout: each process would draw its own masks, and the curves would differ by them.
SETTINGS: dict[str, Any] = {
    "lora_dropout": 0.0,
    "batch_size": 4,
    "grad_accum": 2,
    "max_seq_len": 128,
}


@pytest.fixture
def dialogues(
    shared_storage: Path, project: Project, owner: User, tmp_path: Path, tiny_folder: Path
) -> Dataset:
    return sample_dialogues(project, owner, tmp_path / "uploads", fractions=(0.8, 0.1, 0.1))


def start_like(job: Job, **changes: object) -> Job:
    """Queue a run with `job`'s settings and `changes`."""
    params = TrainParams(**{**job.params, **changes})
    assert job.created_by and job.base_model and job.dataset
    with transaction.atomic():
        return finetune_create(
            project=job.project,
            user=job.created_by,
            base_model=job.base_model,
            dataset=job.dataset,
            params=params,
            total_steps=params.max_steps or 0,
        )


def ddp_folder(worker: WorkerProcess, job: Job, attempt: int = 1) -> Path:
    return worker.log_path.parent / "var" / "jobs" / str(job.id) / f"attempt-{attempt}" / "ddp"


def curve(job: Job, name: str) -> list[tuple[int, float]]:
    points = MetricPoint.objects.filter(job=job, name=name).order_by("step")
    return list(points.values_list("step", "value"))


def log_lines(job: Job) -> list[str]:
    job.refresh_from_db()
    return [str(line) for line in job.result.get("log", [])]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as fh:
        return fh.read().split(")")[1].split()[0] != "Z"  # a zombie has exited
    return True


def wait_gone(pids: list[int], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids):
        assert time.monotonic() < deadline, f"training processes still running: {pids}"
        time.sleep(0.1)


def test_two_processes_give_the_one_process_loss_curve_with_one_checkpoint_per_save_and_one_artifact(
    live_worker: WorkerProcess,
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    dialogues: Dataset,
) -> None:
    common = {**SETTINGS, "max_steps": 6, "eval_every": 3, "checkpoint_every": 2}
    single = start_finetune(project, owner, tiny_model, dialogues, **common)
    double = start_like(single, processes=2)
    single = wait_for_job(single.id, timeout=120)
    double = wait_for_job(double.id, timeout=150)

    assert single.status == JobStatus.SUCCEEDED, single.error
    assert double.status == JobStatus.SUCCEEDED, double.error
    one, two = curve(single, "train_loss"), curve(double, "train_loss")
    assert [s for s, _ in two] == list(range(1, 7))
    assert [s for s, _ in one] == [s for s, _ in two]
    for (step, a), (_, b) in zip(one, two, strict=True):
        assert b == pytest.approx(a, rel=1e-4, abs=1e-5), f"step {step}: {a} vs {b}"
    assert [s for s, _ in curve(double, "val_loss")] == [0, 3, 6]
    for (_, a), (_, b) in zip(curve(single, "val_loss"), curve(double, "val_loss"), strict=True):
        assert b == pytest.approx(a, rel=1e-4, abs=1e-5)
    # The training did change the model: the curve is not flat.
    assert two[-1][1] != pytest.approx(two[0][1], rel=1e-3)

    lines = log_lines(double)
    assert any("2 data-parallel processes" in line for line in lines), lines
    saved = [line for line in lines if "saved by rank 0" in line]
    assert saved == [f"checkpoint step-{s} saved by rank 0" for s in (2, 4, 6)]
    folder = ddp_folder(live_worker, double)
    assert sorted(p.name for p in folder.glob("rank-*.pid")) == ["rank-0.pid", "rank-1.pid"]
    assert not list(folder.glob("rank-*.error.json"))
    assert Artifact.objects.filter(job=double).count() == 1
    summary = double.result["summary"]
    assert summary["steps"] == 6 and summary["tokens_per_s"] > 0
    assert summary["tokens"] == single.result["summary"]["tokens"]  # same rows, same batches
    candidate = CatalogModel.objects.get(trained_by_job=double)
    assert candidate.parent_id == tiny_model.id


def test_cancel_stops_both_processes_within_one_step(
    live_worker: WorkerProcess,
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    dialogues: Dataset,
) -> None:
    job = start_finetune(
        project, owner, tiny_model, dialogues, processes=2, max_steps=2000, **SETTINGS
    )
    job = wait_for_job(job.id, lambda j: not j.is_active or j.progress_done >= 3, timeout=120)
    assert job.status == JobStatus.RUNNING, job.error
    pids = list(ddp.rank_pids(ddp_folder(live_worker, job)).values())
    assert len(pids) == 2 and all(alive(p) for p in pids)

    job_cancel(job=job, actor=owner)
    seen_after_cancel = Job.objects.get(id=job.id).progress_done
    job = wait_for_job(job.id, timeout=30)

    assert job.status == JobStatus.CANCELLED
    stopped_at = job.result["summary"]["steps"]
    assert seen_after_cancel <= stopped_at <= seen_after_cancel + 1
    wait_gone(pids, timeout=10)
    assert not Artifact.objects.filter(job=job).exists()


def test_a_killed_rank_fails_the_attempt_cleanly_and_the_job_resumes_and_finishes(
    live_worker: WorkerProcess,
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    dialogues: Dataset,
) -> None:
    job = start_finetune(
        project,
        owner,
        tiny_model,
        dialogues,
        processes=2,
        max_steps=16,
        checkpoint_every=4,
        eval_every=0,
        **SETTINGS,
    )
    job = wait_for_job(job.id, lambda j: not j.is_active or j.progress_done >= 6, timeout=120)
    assert job.status == JobStatus.RUNNING, job.error
    folder = ddp_folder(live_worker, job)
    pids = ddp.rank_pids(folder)
    os.kill(pids[1], signal.SIGKILL)
    wait_gone(list(pids.values()), timeout=30)  # torchrun tears the other rank down

    job = wait_for_job(job.id, timeout=180)

    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.attempt == 2
    lines = log_lines(job)
    assert any(line.startswith("attempt 1: training process") for line in lines), lines
    assert any(line.startswith("attempt 2: resuming from step-") for line in lines), lines
    assert job.result["summary"]["resumed_from_step"] >= 4
    assert [s for s, _ in curve(job, "train_loss")] == list(range(1, 17))
    assert Artifact.objects.filter(job=job).count() == 1
    # The second attempt launched its own group.
    assert sorted(ddp.rank_pids(ddp_folder(live_worker, job, 2))) == [0, 1]


def test_an_alignment_job_with_two_processes_matches_one_process_and_leaves_one_candidate(
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
    values: dict[str, Any] = {
        "model_ref": tiny_model.slug,
        "preference_set_id": pset.id,
        "max_steps": 4,
        "batch_size": 4,
        "max_length": 64,
        "checkpoint_every": 2,
        "learning_rate": 1e-3,
    }
    single = align_create(
        project=project, user=owner, base_model=tiny_model, params=AlignParams(**values)
    )
    double = align_create(
        project=project,
        user=owner,
        base_model=tiny_model,
        params=AlignParams(**values, processes=2),
    )
    single = wait_for_job(single.id, timeout=180)
    double = wait_for_job(double.id, timeout=180)

    assert single.status == JobStatus.SUCCEEDED, single.error
    assert double.status == JobStatus.SUCCEEDED, double.error
    assert any("2 data-parallel processes" in line for line in log_lines(double))
    one, two = curve(single, "train_loss"), curve(double, "train_loss")
    assert [s for s, _ in two] == [1, 2, 3, 4]
    for (step, a), (_, b) in zip(one, two, strict=True):
        assert b == pytest.approx(a, rel=1e-3, abs=1e-4), f"step {step}: {a} vs {b}"
    assert double.result["preference"]["after"]["pairs"] == 2
    assert Artifact.objects.filter(job=double).count() == 1
    assert CatalogModel.objects.filter(trained_by_job=double).count() == 1
