"""Several training processes on the web side: the fine-tuning step plans memory per process
(a full replica each, activations of its share of the batch) and says so, refuses a run
whose processes do not fit, and queues the processes asked for."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import User
from django.test import Client

from lifecycle_app.models import CatalogModel, Dataset, Job, Project, PromptTemplate
from lifecycle_app.stages.finetune.planning import plan_for
from lifecycle_app.stages.prompt.building import snapshot
from tests.unit.test_finetune import (  # noqa: F401 (fixtures)
    client,
    dialogues,
    form_data,
    step_url,
    storage,
    template,
)
from workers.ml.params import AlignParams, TrainParams
from workers.ml.planner import memory

pytestmark = pytest.mark.django_db


def test_processes_share_the_batch_and_never_outnumber_its_rows() -> None:
    assert memory.per_process(8, 1) == (1, 8)
    assert memory.per_process(8, 2) == (2, 4)
    assert memory.per_process(5, 2) == (2, 3)
    assert memory.per_process(3, 8) == (3, 1)


def params(model: CatalogModel, dataset: Dataset, tpl: PromptTemplate, **kw: Any) -> TrainParams:
    return TrainParams(
        model_ref=model.slug,
        dataset_id=dataset.id,
        template=snapshot(tpl),
        batch_size=8,
        max_seq_len=512,
        **kw,
    )


def test_the_plan_is_per_process_each_with_a_full_replica_and_its_share_of_the_batch(
    tiny_model: CatalogModel,
    dialogues: Dataset,  # noqa: F811
    template: PromptTemplate,  # noqa: F811
    settings: Any,
) -> None:
    settings.GPU_QUEUE = ""
    one = plan_for(tiny_model, params(tiny_model, dialogues, template), dialogues)
    two = plan_for(tiny_model, params(tiny_model, dialogues, template, processes=2), dialogues)

    assert (one["processes"], two["processes"]) == (1, 2)
    assert two["rows_per_process"] == 4
    rows_one, rows_two = (
        dict((n, gb) for n, gb, _ in one["rows"]),
        {n: gb for n, gb, _ in two["rows"]},
    )
    assert rows_two["weights"] == rows_one["weights"]  # every process holds the model
    assert rows_two["activations"] == pytest.approx(rows_one["activations"] / 2)
    assert two["total_gb"] < one["total_gb"]
    # On CPU the processes share the worker's memory.
    assert two["available_gb"] == pytest.approx(one["available_gb"] / 2, rel=1e-6)


def test_the_step_says_per_process_when_there_are_several(
    client: Client,  # noqa: F811
    project: Project,
    tiny_model: CatalogModel,
    dialogues: Dataset,  # noqa: F811
    template: PromptTemplate,  # noqa: F811
) -> None:
    data = form_data(tiny_model, dialogues, template, processes=2, batch_size=4)
    response = client.get(f"{step_url(project)}?{urlencode(data, doseq=True)}")

    content = response.content.decode()
    assert response.status_code == 200
    assert "Per process (2 processes, 2 rows of each batch)" in content
    assert "each process has" in content


def test_a_run_whose_processes_do_not_fit_is_refused_per_process(
    client: Client,  # noqa: F811
    project: Project,
    tiny_model: CatalogModel,
    dialogues: Dataset,  # noqa: F811
    template: PromptTemplate,  # noqa: F811
    enqueued: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("lifecycle_app.stages.finetune.planning.worker_memory_bytes", lambda: 4096)

    response = client.post(
        step_url(project), form_data(tiny_model, dialogues, template, processes=2)
    )

    assert response.status_code == 200
    assert "GB per process but a worker has" in response.content.decode()
    assert not Job.objects.exists() and enqueued == []


def test_a_valid_post_queues_the_processes_asked_for(
    client: Client,  # noqa: F811
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    dialogues: Dataset,  # noqa: F811
    template: PromptTemplate,  # noqa: F811
    enqueued: list[int],
    tmp_path: Path,
) -> None:
    response = client.post(
        step_url(project), form_data(tiny_model, dialogues, template, processes=2)
    )

    assert response.status_code == 302
    assert TrainParams(**Job.objects.get().params).processes == 2


def test_the_align_step_queues_the_processes_asked_for(
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    enqueued: list[int],
) -> None:
    from tests.unit.test_feedback import align_data, client_for, make_set
    from tests.unit.test_feedback import step_url as align_url

    pset = make_set(project, 10)
    browser = client_for(owner)
    page = browser.get(align_url(project)).content.decode()
    assert 'name="processes"' in page

    response = browser.post(align_url(project), align_data(tiny_model, pset, processes=2))

    assert response.status_code == 302
    assert AlignParams(**Job.objects.get().params).processes == 2
