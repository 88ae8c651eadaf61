"""Prompt trials end to end: the service queues a trial on Redis, a real Celery worker runs
the tiny model over rows of the sample dialogue dataset, and the Job and TrialExample rows
tell the story (scores, seeds, cancellation within a batch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from lifecycle_app.jobs.services import job_cancel
from lifecycle_app.models import (
    CatalogModel,
    Dataset,
    ExampleStatus,
    Job,
    JobStatus,
    Project,
    PromptTemplate,
    Stage,
    StageKey,
    TrialExample,
)
from lifecycle_app.stages.prompt.building import snapshot
from lifecycle_app.stages.prompt.services import trial_create
from tests.integration.conftest import WorkerProcess, wait_for_job
from tests.integration.sample_data import INSTRUCTION, sample_dialogues, summary_template
from workers.ml.params import TrialParams

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def dialogues(
    shared_storage: Path, project: Project, owner: User, tmp_path: Path, tiny_folder: Path
) -> Dataset:
    # A large validation split, so a trial can run 40 rows of it.
    return sample_dialogues(project, owner, tmp_path / "uploads")


@pytest.fixture
def template(project: Project, owner: User) -> PromptTemplate:
    return summary_template(project, owner)


def start_trial(
    project: Project,
    owner: User,
    model: CatalogModel,
    dataset: Dataset,
    template: PromptTemplate,
    **params: Any,
) -> Job:
    trial = TrialParams(
        model_ref=model.slug, dataset_id=dataset.id, template=snapshot(template), **params
    )
    return trial_create(
        project=project,
        user=owner,
        base_model=model,
        dataset=dataset,
        template=template,
        params=trial,
        rows=trial.n_rows,
    )


def examples(job: Job) -> list[TrialExample]:
    return list(TrialExample.objects.filter(job=job).order_by("index"))


def test_a_one_shot_trial_scores_every_row(
    live_worker: WorkerProcess,
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    dialogues: Dataset,
    template: PromptTemplate,
) -> None:
    job = start_trial(
        project, owner, tiny_model, dialogues, template, n_rows=6, shots=1, max_new_tokens=8
    )

    job = wait_for_job(job.id)

    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.worker == live_worker.hostname
    assert job.progress_done == job.progress_total == 6
    rows = examples(job)
    assert len(rows) == 6
    assert len({r.line for r in rows}) == 6
    for row in rows:
        assert row.status == ExampleStatus.DONE, row.error
        assert row.output
        assert row.output_tokens == 8  # the tiny model never stops early
        assert row.finish_reason == "length"
        assert set(row.scores) == {"rouge1", "rouge2", "rougeL"}
        assert all(0.0 <= v <= 1.0 for v in row.scores.values())
        assert row.reference
        assert row.prompt.startswith(f"{INSTRUCTION}\n\nDialogue: ")
        assert row.prompt.endswith(f"Dialogue: {row.input}\nSummary:")
        assert row.prompt.count("\nSummary:") == 2  # one shot, then the row
        assert row.prompt_tokens > 0
    result = job.result
    assert result["rows_done"] == 6
    assert (result["rows_failed"], result["rows_skipped"], result["cancelled"]) == (0, 0, False)
    assert result["output_tokens"] == 48
    assert result["tokens_per_second"] > 0
    assert result["shots"] == 1
    assert result["device"] == "cpu"
    for key in ("rouge1", "rouge2", "rougeL"):
        mean = sum(r.scores[key] for r in rows) / 6
        assert result["scores"][key] == pytest.approx(mean, abs=1e-5)
    answers = Stage.objects.get(project=project, key=StageKey.ADAPT).step("prompt")["answers"]
    assert answers["succeeded_trial"] == job.id


def test_the_same_sampled_trial_gives_the_same_outputs_and_scores(
    live_worker: WorkerProcess,
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    dialogues: Dataset,
    template: PromptTemplate,
) -> None:
    settings: dict[str, Any] = {
        "n_rows": 4,
        "shots": 1,
        "max_new_tokens": 8,
        "decoding": "sampling",
        "temperature": 1.0,
        "seed": 11,
        "batch_size": 2,
    }

    first = wait_for_job(
        start_trial(project, owner, tiny_model, dialogues, template, **settings).id
    )
    second = wait_for_job(
        start_trial(project, owner, tiny_model, dialogues, template, **settings).id
    )

    assert first.status == second.status == JobStatus.SUCCEEDED, (first.error, second.error)
    outputs = [(r.line, r.output, r.scores) for r in examples(first)]
    assert outputs == [(r.line, r.output, r.scores) for r in examples(second)]
    assert first.result["scores"] == second.result["scores"]
    assert all(output for _, output, _ in outputs)


def test_cancel_stops_a_trial_within_one_batch_and_keeps_the_rows_done(
    live_worker: WorkerProcess,
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    dialogues: Dataset,
    template: PromptTemplate,
) -> None:
    batch = 2
    job = start_trial(
        project,
        owner,
        tiny_model,
        dialogues,
        template,
        n_rows=60,
        max_new_tokens=64,
        batch_size=batch,
    )
    wait_for_job(job.id, lambda j: j.status == JobStatus.RUNNING and j.progress_done > 0)

    job_cancel(job=job)
    done_when_asked = TrialExample.objects.filter(job=job, status=ExampleStatus.DONE).count()

    job = wait_for_job(job.id, timeout=20)
    assert job.status == JobStatus.CANCELLED
    rows = examples(job)
    done = [r for r in rows if r.status == ExampleStatus.DONE]
    pending = [r for r in rows if r.status == ExampleStatus.PENDING]
    assert batch <= len(done) <= done_when_asked + batch
    assert len(done) + len(pending) == 60
    assert pending
    assert all(r.output and r.scores for r in done)
    assert all(r.output == "" and r.scores == {} for r in pending)
    assert job.result["cancelled"] is True
    assert job.result["rows_done"] == len(done)
    assert job.result["batch_size"] == batch
    assert job.finished_at is not None
