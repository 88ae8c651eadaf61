"""Optimize and deploy end to end: a real worker exports the tiny model to int8, measures
it beside its parent on the sample test rows, bundles it; deployed, it answers the
project's API through the "serve" queue."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from lifecycle_app.models import Artifact, CatalogModel, Dataset, JobStatus, ModelVariant, Project
from lifecycle_app.stages.deploy.services import api_token_create, export_create, variant_deploy
from tests.integration.conftest import WorkerProcess, wait_for_job
from tests.integration.sample_data import sample_dialogues
from workers.ml.params import ExportParams

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def dialogues(
    shared_storage: Path, project: Project, owner: User, tmp_path: Path, tiny_folder: Path
) -> Dataset:
    return sample_dialogues(project, owner, tmp_path / "uploads", fractions=(0.8, 0.1, 0.1))


def test_an_int8_export_is_measured_bundled_deployed_and_served(
    live_worker: WorkerProcess,
    dialogues: Dataset,
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
) -> None:
    params = ExportParams(
        kind="int8",
        model_ref=tiny_model.slug,
        dataset_id=dialogues.id,
        eval_rows=6,
        max_new_tokens=8,
    )
    job = export_create(
        project=project, user=owner, source=tiny_model, dataset=dialogues, params=params
    )

    job = wait_for_job(job.id, timeout=180)

    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.progress_done == job.progress_total == 6
    variant = ModelVariant.objects.select_related("candidate").get(job=job)
    m = variant.measurements
    assert m["variant"]["size_bytes"] < m["parent"]["size_bytes"]
    for side in ("variant", "parent"):
        assert m[side]["tokens_per_s"] > 0 and m[side]["latency_ms"] > 0
        assert set(m[side]["scores"]) == {"rouge1", "rouge2", "rougeL"}
        assert m[side]["rows"] == 6
    assert m["settings"]["split"] == "test"
    artifact = Artifact.objects.get(job=job)
    assert artifact.size_bytes > 0 and len(artifact.sha256) == 64
    assert variant.candidate is not None and variant.candidate.parent == tiny_model
    with zipfile.ZipFile(variant.bundle_path) as zf:
        names = set(zf.namelist())
    assert {"serve.py", "SERVING.md", "model/README.md", "model/model_int8.pt"} <= names

    variant_deploy(project=project, variant=variant, actor=owner)
    _, raw = api_token_create(project=project, actor=owner, name="integration")
    body = {"messages": [{"role": "user", "content": "Summarize: A: Lunch? B: Sure."}]}
    response = Client().post(
        reverse("api_generate", args=[project.slug]),
        data=json.dumps({**body, "max_tokens": 5}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    )

    assert response.status_code == 200, response.content
    data = response.json()
    assert isinstance(data["choices"][0]["message"]["content"], str)
    assert data["usage"]["completion_tokens"] == 5  # the tiny model never stops early
    assert data["choices"][0]["finish_reason"] == "length"


def test_an_onnx_int8_export_is_measured_in_onnxruntime_and_deployable(
    live_worker: WorkerProcess,
    dialogues: Dataset,
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
) -> None:
    from workers.ml.export.onnx_runtime import is_onnx_variant, load_onnx
    from workers.ml.params import GenerationSettings

    params = ExportParams(
        kind="onnx_int8",
        model_ref=tiny_model.slug,
        dataset_id=dialogues.id,
        eval_rows=6,
        max_new_tokens=8,
    )
    job = export_create(
        project=project, user=owner, source=tiny_model, dataset=dialogues, params=params
    )

    job = wait_for_job(job.id, timeout=240)

    assert job.status == JobStatus.SUCCEEDED, job.error
    variant = ModelVariant.objects.get(job=job)
    m = variant.measurements
    for side in ("variant", "parent"):
        assert m[side]["tokens_per_s"] > 0 and m[side]["latency_ms"] > 0
        assert m[side]["latency_tokens"] == 8 and m[side]["rows"] == 6
        assert set(m[side]["scores"]) == {"rouge1", "rouge2", "rougeL"}
    # Recorded, not compared: the tiny model's ONNX graph outweighs its 100k weights.
    assert m["variant"]["size_bytes"] > 0
    assert variant.candidate is None and variant.bundle_path  # its bundle serves on onnxruntime
    assert is_onnx_variant(variant.path)
    answer = load_onnx(variant.path).generate_texts(["Hello"], GenerationSettings(max_new_tokens=4))
    assert answer is not None and answer[0][1] == 4

    variant_deploy(project=project, variant=variant, actor=owner)
    variant.refresh_from_db()
    assert variant.is_deployed
