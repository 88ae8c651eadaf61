"""The sample dialogue dataset and a summary template, created through the services as a
user would, for the tests that run jobs in a real worker."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction

import lifecycle_app
from lifecycle_app.datasets.services import Mapping, dataset_create_from_staged, dataset_stage_file
from lifecycle_app.models import CatalogModel, Dataset, Job, Project, PromptTemplate
from lifecycle_app.stages.finetune.services import finetune_create
from lifecycle_app.stages.prompt.building import snapshot
from lifecycle_app.stages.prompt.services import template_create
from workers.ml.params import TrainParams

SAMPLE = Path(lifecycle_app.__file__).resolve().parent / "samples" / "dialogue_summaries.jsonl"
INSTRUCTION = "Summarize the dialogue in one sentence."


def sample_dialogues(
    project: Project,
    owner: User,
    uploads: Path,
    fractions: tuple[float, float, float] = (0.5, 0.4, 0.1),
) -> Dataset:
    """The sample set, split train / validation / test by `fractions` (seed 42). `uploads`
    must be settings.FILE_UPLOAD_TEMP_DIR."""
    incoming = uploads / "incoming.jsonl"
    shutil.copyfile(SAMPLE, incoming)
    staged = dataset_stage_file(project=project, user=owner, path=incoming, filename=SAMPLE.name)
    return dataset_create_from_staged(
        project=project,
        user=owner,
        staged=staged,
        mapping=Mapping(
            input_field="dialogue",
            target_field="summary",
            classification=False,
            seed=42,
            fractions=fractions,
        ),
        name="Dialogues",
        profile_model=None,
    )


def summary_template(project: Project, owner: User) -> PromptTemplate:
    return template_create(
        project=project,
        user=owner,
        name="Summarize",
        fields={
            "instruction": INSTRUCTION,
            "example_format": "Dialogue: {input}\nSummary: {target}",
            "body": "{instruction}\n\n{examples}Dialogue: {input}\nSummary:",
            "use_chat_template": True,
        },
    )


def start_finetune(
    project: Project,
    owner: User,
    model: CatalogModel,
    dataset: Dataset,
    *,
    queue: str = "",
    **overrides: Any,
) -> Job:
    """Queue a LoRA run on `dataset` with the summary template; `queue` sends it to a queue
    of the test's own instead of the usual one (the message goes out on commit)."""
    values: dict[str, Any] = {
        "method": "lora",
        "batch_size": 2,
        "max_seq_len": 256,
        "eval_every": 100,
        "eval_rows": 4,
        **overrides,
    }
    params = TrainParams(
        model_ref=model.slug,
        dataset_id=dataset.id,
        template=snapshot(summary_template(project, owner)),
        **values,
    )
    with transaction.atomic():
        job = finetune_create(
            project=project,
            user=owner,
            base_model=model,
            dataset=dataset,
            params=params,
            total_steps=params.max_steps or 0,
        )
        if queue:
            Job.objects.filter(id=job.id).update(queue=queue)
    return job
