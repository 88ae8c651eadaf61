"""Fine-tuning on the web side: the wizard step's plan before launch (trainable parameters,
memory verdict, refusal), queueing a run, the dashboard and its live fragment, finishing
a run idempotently, and the reaper requeueing a lost run to resume."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from lifecycle_app.jobs.fencing import JobFenced
from lifecycle_app.jobs.services import job_reap_stale
from lifecycle_app.models import (
    Artifact,
    CatalogModel,
    Dataset,
    Job,
    JobKind,
    JobStatus,
    MetricPoint,
    Project,
    PromptTemplate,
    StageKey,
)
from lifecycle_app.stages.finetune import runs as finetune_runs
from lifecycle_app.stages.finetune import services as finetune_services
from lifecycle_app.stages.prompt.building import snapshot
from lifecycle_app.stages.prompt.services import template_create
from tests.integration.sample_data import sample_dialogues
from workers.ml.params import TrainParams
from workers.ml.training import sft
from workers.tasks.base import JobRun, attempt_folder

FIELDS: dict[str, Any] = {
    "instruction": "Summarize the dialogue in one sentence.",
    "example_format": "Dialogue: {input}\nSummary: {target}",
    "body": "{instruction}\n\n{examples}Dialogue: {input}\nSummary:",
    "use_chat_template": True,
}


@pytest.fixture(autouse=True)
def storage(settings: Any, tmp_path: Path, tiny_folder: Path) -> Path:
    for name in ("datasets", "uploads", "jobs"):
        (tmp_path / name).mkdir()
    settings.DATASETS_DIR = tmp_path / "datasets"
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path / "uploads")
    settings.JOBS_DIR = tmp_path / "jobs"
    return tmp_path


@pytest.fixture
def client(owner: User) -> Client:
    client = Client()
    client.force_login(owner)
    return client


@pytest.fixture
def dialogues(project: Project, owner: User, storage: Path) -> Dataset:
    return sample_dialogues(project, owner, storage / "uploads", fractions=(0.8, 0.1, 0.1))


@pytest.fixture
def template(project: Project, owner: User) -> PromptTemplate:
    return template_create(project=project, user=owner, name="Summarize", fields=FIELDS)


def step_url(project: Project) -> str:
    return reverse("wizard_step", args=[project.slug, StageKey.ADAPT, "fine-tune"])


def form_data(model: CatalogModel, dataset: Dataset, template: PromptTemplate, **kw: Any) -> dict:
    data: dict[str, Any] = {
        "base_model": model.slug,
        "dataset": dataset.id,
        "template": template.id,
        "method": "lora",
        "lora_r": 8,
        "lora_alpha": 16,
        "lora_dropout": 0.05,
        "target_modules": ["q_proj", "v_proj"],
        "num_virtual_tokens": 16,
        "max_steps": 30,
        "epochs": 1,
        "lr_scheduler": "linear",
        "warmup_steps": 0,
        "batch_size": 4,
        "grad_accum": 1,
        "max_seq_len": 256,
        "eval_every": 10,
        "checkpoint_every": 10,
        "seed": 0,
    }
    data.update(kw)
    return data


def lora_count(tiny_folder: Path, r: int) -> int:
    """r x (in + out) for q_proj and v_proj in every layer, from the model's config."""
    config = json.loads((tiny_folder / "config.json").read_text())
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    head_dim = config.get("head_dim") or hidden // heads
    kv = config.get("num_key_value_heads") or heads
    per_layer = r * (hidden + heads * head_dim) + r * (hidden + kv * head_dim)
    return int(config["num_hidden_layers"] * per_layer)


def test_the_step_shows_the_trainable_parameters_and_the_memory_verdict_before_launch(
    client: Client,
    project: Project,
    tiny_model: CatalogModel,
    dialogues: Dataset,
    template: PromptTemplate,
    tiny_folder: Path,
) -> None:
    response = client.get(step_url(project))

    assert response.status_code == 200
    content = response.content.decode()
    assert f"{lora_count(tiny_folder, 8):,}" in content
    assert "Fits" in content or "fits" in content


def test_a_valid_post_queues_one_finetune_job_and_opens_its_dashboard(
    client: Client,
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    dialogues: Dataset,
    template: PromptTemplate,
    enqueued: list[int],
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(step_url(project), form_data(tiny_model, dialogues, template))

    job = Job.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("finetune_detail", args=[project.slug, job.id])
    assert enqueued == [job.id]
    assert (job.kind, job.status, job.created_by) == (JobKind.FINETUNE, JobStatus.QUEUED, owner)
    assert (job.progress_total, job.progress_unit) == (30, "steps")
    params = TrainParams(**job.params)
    assert params.method == "lora" and params.target_modules == ["q_proj", "v_proj"]
    assert params.template == snapshot(template)


def test_a_run_that_does_not_fit_is_refused_with_the_reason(
    client: Client,
    project: Project,
    tiny_model: CatalogModel,
    dialogues: Dataset,
    template: PromptTemplate,
    enqueued: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("lifecycle_app.stages.finetune.planning.worker_memory_bytes", lambda: 4096)

    response = client.post(step_url(project), form_data(tiny_model, dialogues, template))

    assert response.status_code == 200
    assert "This run needs about" in response.content.decode()
    assert "a worker has" in response.content.decode()
    assert not Job.objects.exists() and enqueued == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"warmup_steps": 40}, "longer than the run"),
        ({"target_modules": []}, "Pick at least one module for LoRA."),
        ({"batch_size": 0}, "greater than or equal to 1"),
        ({"max_steps": "many"}, "Enter a whole number."),
        ({"learning_rate": -1}, "greater than or equal to"),
    ],
)
def test_bad_settings_get_a_message_and_start_nothing(
    client: Client,
    project: Project,
    tiny_model: CatalogModel,
    dialogues: Dataset,
    template: PromptTemplate,
    enqueued: list[int],
    overrides: dict[str, Any],
    message: str,
) -> None:
    response = client.post(
        step_url(project), form_data(tiny_model, dialogues, template, **overrides)
    )

    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Job.objects.exists() and enqueued == []


def queued_run(project: Project, owner: User, model: CatalogModel, dataset: Dataset) -> Job:
    template = PromptTemplate.objects.filter(project=project).first() or template_create(
        project=project, user=owner, name="T", fields=FIELDS
    )
    params = TrainParams(model_ref=model.slug, dataset_id=dataset.id, template=snapshot(template))
    return finetune_services.finetune_create(
        project=project,
        user=owner,
        base_model=model,
        dataset=dataset,
        params=params,
        total_steps=30,
    )


def test_finishing_a_run_twice_keeps_one_artifact_and_one_candidate(
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    dialogues: Dataset,
    storage: Path,
    enqueued: list[int],
) -> None:
    job = queued_run(project, owner, tiny_model, dialogues)
    final = attempt_folder(job.id, 1) / "run" / "final"
    final.mkdir(parents=True)
    (final / "adapter_model.safetensors").write_bytes(b"weights" * 100)
    (final / "adapter_config.json").write_text("{}")
    (final / sft.CONFIG_NAME).write_text("{}")
    files = sft.artifact_files(final)
    summary = {"steps": 30, "final_train_loss": 1.5, "final_eval_loss": 1.6}

    first = finetune_services.finetune_finish(
        job=job, summary=summary, final_dir=final, files=files
    )
    second = finetune_services.finetune_finish(
        job=job, summary=summary, final_dir=final, files=files
    )

    assert first.id == second.id
    artifact = Artifact.objects.get(job=job)
    assert artifact.size_bytes == sum(f["size"] for f in files)
    assert artifact.sha256 == next(
        f["sha256"] for f in files if f["path"] == "adapter_model.safetensors"
    )
    candidate = CatalogModel.objects.get(trained_by_job=job)
    assert (candidate.project, candidate.parent, candidate.location) == (
        project,
        tiny_model,
        str(final),
    )
    # A candidate of this project only: not in the catalog, listed for the project.
    assert candidate not in CatalogModel.objects.catalog()
    assert candidate in CatalogModel.objects.for_project(project)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED


def test_a_superseded_attempt_cannot_publish_its_artifact(
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    dialogues: Dataset,
    storage: Path,
    enqueued: list[int],
) -> None:
    """Fencing: attempt 1 woke up after attempt 2 took the job; its finish writes nothing."""
    job = queued_run(project, owner, tiny_model, dialogues)
    Job.objects.filter(id=job.id).update(status=JobStatus.RUNNING, attempt=2)
    final = attempt_folder(job.id, 1) / "run" / "final"
    final.mkdir(parents=True)
    (final / sft.CONFIG_NAME).write_text("{}")
    late = JobRun(job_id=job.id, attempt=1)

    with pytest.raises(JobFenced):
        late.write(
            finetune_services.finetune_finish,
            job=job,
            summary={"steps": 30},
            final_dir=final,
            files=sft.artifact_files(final),
        )
    with pytest.raises(JobFenced):  # and it stops at its next check, without asking the row
        late.should_cancel()

    assert not Artifact.objects.filter(job=job).exists()
    assert not CatalogModel.objects.filter(trained_by_job=job).exists()
    assert Job.objects.get(id=job.id).status == JobStatus.RUNNING


def lose(job: Job, attempt: int, **fields: Any) -> None:
    Job.objects.filter(id=job.id).update(
        status=JobStatus.RUNNING,
        attempt=attempt,
        started_at=timezone.now() - timedelta(minutes=10),
        heartbeat_at=timezone.now() - timedelta(minutes=5),
        progress_done=17,
        **fields,
    )


def test_the_reaper_requeues_a_lost_run_to_resume_while_attempts_are_left(
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    dialogues: Dataset,
    enqueued: list[int],
    django_capture_on_commit_callbacks: Any,
) -> None:
    job = queued_run(project, owner, tiny_model, dialogues)
    enqueued.clear()
    lose(job, attempt=1)

    with django_capture_on_commit_callbacks(execute=True):
        assert job_reap_stale() == 1

    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    assert job.worker == "" and job.heartbeat_at is None
    assert "lost at step 17" in job.message and "attempt 2 of 3" in job.message
    assert enqueued == [job.id]


def test_the_reaper_fails_a_run_out_of_attempts_or_being_cancelled(
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    dialogues: Dataset,
    enqueued: list[int],
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    spent = queued_run(project, owner, tiny_model, dialogues)
    cancelling = queued_run(project, owner, tiny_model, dialogues)
    enqueued.clear()
    lose(spent, attempt=settings.JOB_MAX_ATTEMPTS)
    lose(cancelling, attempt=1, cancel_requested_at=timezone.now())

    with django_capture_on_commit_callbacks(execute=True):
        assert job_reap_stale() == 2

    spent.refresh_from_db()
    cancelling.refresh_from_db()
    assert spent.status == cancelling.status == JobStatus.FAILED
    assert f"lost {settings.JOB_MAX_ATTEMPTS} times" in spent.error
    assert "last checkpoint is kept" in spent.error
    assert "stopped responding" in cancelling.error
    assert enqueued == []


def test_the_dashboard_draws_the_curves_and_its_polling_gets_only_the_live_part(
    client: Client,
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    dialogues: Dataset,
    enqueued: list[int],
) -> None:
    job = queued_run(project, owner, tiny_model, dialogues)
    Job.objects.filter(id=job.id).update(status=JobStatus.RUNNING, progress_done=2)
    for step, loss in ((1, 2.5), (2, 2.25)):
        finetune_runs.metric_record(job_id=job.id, step=step, values={"train_loss": loss})
    finetune_runs.metric_record(job_id=job.id, step=2, values={"val_loss": 2.4})
    finetune_runs.metric_record(job_id=job.id, step=2, values={"train_loss": 2.0})  # a resumed step
    url = reverse("finetune_detail", args=[project.slug, job.id])

    page = client.get(url)
    fragment = client.get(url, headers={"HX-Request": "true", "HX-Target": "ft-live"})

    assert page.status_code == fragment.status_code == 200
    assert "<html" in page.content.decode() and "<html" not in fragment.content.decode()
    assert 'id="ft-live"' in page.content.decode()
    assert MetricPoint.objects.filter(job=job).count() == 3
    series = page.context["curves"]
    assert series == {"train_loss": [[1, 2.5], [2, 2.0]], "val_loss": [[2, 2.4]]}
    assert 'data-testid="step">2 / 30<' in fragment.content.decode()
