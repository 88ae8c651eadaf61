"""Profile jobs end to end: a dataset saved through the services is tokenized by a real
Celery worker with the tiny model's tokenizer, and its token-length profile is stored.

The worker runs with its own LIFECYCLE_VAR_DIR (tests/integration/conftest.py), so the
test process writes its datasets into that folder's datasets/: both must find the files
under the same DATASETS_DIR.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from django.contrib.auth.models import User

import lifecycle_app
from lifecycle_app.datasets.services import Mapping, dataset_create_from_staged, dataset_stage_file
from lifecycle_app.models import CatalogModel, Dataset, Job, JobKind, JobStatus, Project
from tests.integration.conftest import WorkerProcess, wait_for_job

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

SAMPLE = Path(lifecycle_app.__file__).resolve().parent / "samples" / "dialogue_summaries.jsonl"
SAMPLE_ROWS = 181


def test_a_profile_job_stores_token_histograms_of_every_row(
    shared_storage: Path,
    live_worker: WorkerProcess,
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    tmp_path: Path,
) -> None:
    incoming = tmp_path / "uploads" / "incoming.jsonl"
    shutil.copyfile(SAMPLE, incoming)
    staged = dataset_stage_file(project=project, user=owner, path=incoming, filename=SAMPLE.name)
    dataset = dataset_create_from_staged(
        project=project,
        user=owner,
        staged=staged,
        mapping=Mapping(
            input_field="dialogue",
            target_field="summary",
            classification=False,
            seed=42,
            fractions=(0.8, 0.1, 0.1),
        ),
        name="Dialogues",
        profile_model=tiny_model,
    )
    assert dataset.clean_path.is_relative_to(shared_storage)
    job = Job.objects.get(dataset=dataset)
    assert job.kind == JobKind.PROFILE

    job = wait_for_job(job.id)

    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.worker == live_worker.hostname
    assert job.progress_done == job.progress_total == SAMPLE_ROWS
    assert job.result == {"over_context": 0, "rows": SAMPLE_ROWS}
    dataset = Dataset.objects.get(id=dataset.id)
    assert dataset.valid_rows == SAMPLE_ROWS
    profile = dataset.profile
    assert profile["rows"] == dataset.split_counts
    assert sum(profile["rows"].values()) == SAMPLE_ROWS
    for key in ("input_tokens", "target_tokens"):
        histogram = profile[key]
        assert sum(histogram["counts"]) == SAMPLE_ROWS, key
        assert len(histogram["edges"]) == len(histogram["counts"]) + 1
        assert 0 < histogram["min"] <= histogram["p50"] <= histogram["max"]
    # Dialogues are longer than their summaries.
    assert profile["input_tokens"]["mean"] > profile["target_tokens"]["mean"]
    assert profile["context_length"] == tiny_model.context_length
    assert profile["model"] == tiny_model.name
