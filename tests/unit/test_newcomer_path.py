"""The newcomer's path (issue 21): decisions carried forward, splits the data comes with,
share twins, read-only viewers, blind ratings and the smaller stumbles."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, cast

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from lifecycle_app.common.labels import versioned_name
from lifecycle_app.common.refusals import ExpectedRefusalFilter
from lifecycle_app.models import (
    CatalogModel,
    Dataset,
    Job,
    JobKind,
    JobStatus,
    Project,
    PromptTemplate,
    StageKey,
)
from lifecycle_app.projects.services import stage_step_save
from lifecycle_app.stages.align import services as align_services
from lifecycle_app.stages.deploy.services import api_token_create
from lifecycle_app.stages.prompt.services import template_create
from lifecycle_app.teams.services import share_link_create
from tests.factories import CatalogModelFactory, scope_data
from tests.integration.sample_data import sample_dialogues
from tests.unit.test_feedback import make_trial as make_rated_trial
from tests.unit.test_finetune import FIELDS, queued_run
from tests.unit.test_views_trials import make_trial
from workers.ml.data import validation
from workers.ml.data.splits import combine_split_files, split_of


@pytest.fixture(autouse=True)
def storage(settings: Any, tmp_path: Path, tiny_folder: Path) -> Path:
    for name in ("datasets", "uploads", "jobs"):
        (tmp_path / name).mkdir()
    settings.DATASETS_DIR = tmp_path / "datasets"
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path / "uploads")
    settings.JOBS_DIR = tmp_path / "jobs"
    return tmp_path


@pytest.fixture(autouse=True)
def no_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("lifecycle_app.jobs.services._enqueue", lambda job_id: None)


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def dialogues(project: Project, owner: User, storage: Path) -> Dataset:
    return sample_dialogues(project, owner, storage / "uploads", fractions=(0.8, 0.1, 0.1))


@pytest.fixture
def template(project: Project, owner: User) -> PromptTemplate:
    return template_create(project=project, user=owner, name="Summarize v1", fields=FIELDS)


# --- decisions carried forward ----------------------------------------------------------


def _save_plan(project: Project, owner: User, model: CatalogModel, **answers: Any) -> None:
    plan = {
        "base_model": model.slug,
        "method": "lora",
        "dtype": "fp32",
        "lora_r": 16,
        "lora_targets": ["k_proj", "q_proj", "v_proj"],
        "num_virtual_tokens": 20,
        "batch_size": 8,
        "seq_len": 512,
        **answers,
    }
    stage_step_save(
        project=project, stage_key=StageKey.SELECT, step_slug="plan", answers=plan, actor=owner
    )


def test_the_fine_tuning_form_starts_from_the_plan_saved_in_select(
    project: Project, owner: User, tiny_model: CatalogModel, dialogues: Dataset
) -> None:
    _save_plan(project, owner, tiny_model)
    url = reverse("wizard_step", args=[project.slug, StageKey.ADAPT, "fine-tune"])
    form = client_for(owner).get(url).context["form"]
    assert form.initial["lora_r"] == 16
    assert form.initial["target_modules"] == ["k_proj", "q_proj", "v_proj"]
    assert form.initial["batch_size"] == 8
    assert form.initial["max_seq_len"] == 512
    assert form.initial["method"] == "lora"


def test_after_an_epoch_run_the_form_leaves_max_steps_empty_not_30(
    project: Project, owner: User, tiny_model: CatalogModel, dialogues: Dataset
) -> None:
    job = queued_run(project, owner, tiny_model, dialogues)
    job.params = {**job.params, "max_steps": None, "epochs": 1.0}
    job.save(update_fields=["params"])
    url = reverse("wizard_step", args=[project.slug, StageKey.ADAPT, "fine-tune"])
    page = client_for(owner).get(url)
    assert page.context["form"]["max_steps"].value() is None
    assert 'name="max_steps" value="30"' not in page.content.decode()


def test_a_template_named_with_its_version_is_not_given_it_twice(
    template: PromptTemplate,
) -> None:
    assert str(template) == "Summarize v1"
    assert versioned_name("Summarize", 2) == "Summarize v2"
    assert versioned_name("Summarize v1", 2) == "Summarize v1 v2"


def test_the_tiny_test_model_is_offered_only_in_tests_and_development(
    settings: Any, project: Project, owner: User, tiny_model: CatalogModel
) -> None:
    CatalogModelFactory(slug="real", name="Real model", is_test_model=False)
    tiny_model.is_test_model = True
    tiny_model.save(update_fields=["is_test_model"])
    url = reverse("wizard_step", args=[project.slug, StageKey.SELECT, "model"])
    settings.LIFECYCLE_SHOW_TEST_MODELS = False
    hidden = client_for(owner).get(url).content.decode()
    settings.LIFECYCLE_SHOW_TEST_MODELS = True
    shown = client_for(owner).get(url).content.decode()
    assert 'value="tiny"' not in hidden and 'value="real"' in hidden
    assert 'value="tiny"' in shown


def test_saving_scope_confirms_and_the_htmx_swap_carries_the_message(
    project: Project, owner: User
) -> None:
    url = reverse("wizard_step", args=[project.slug, StageKey.SCOPE, "use-case"])
    response = client_for(owner).post(url, scope_data(), follow=True)
    assert "Saved “Define the use case”. Next: Choose a model." in response.content.decode()


# --- datasets: splits as given, licence -------------------------------------------------


def _jsonl(rows: list[dict[str, str]]) -> bytes:
    return "\n".join(json.dumps(r) for r in rows).encode()


def _rows(prefix: str, n: int, **extra: str) -> list[dict[str, str]]:
    return [
        {"input": f"{prefix} dialogue {i}", "target": f"{prefix} summary {i}", **extra}
        for i in range(n)
    ]


def test_a_split_column_keeps_each_rows_split_and_names_bad_values(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    rows = [
        *_rows("a", 5, split="train"),
        *_rows("b", 2, split="dev"),
        *_rows("c", 3, split="test"),
    ]
    rows.append({"input": "odd", "target": "one", "split": "holdout"})
    path.write_bytes(_jsonl(rows))
    kw: dict[str, Any] = {"fmt": "jsonl", "encoding": "utf-8", "input_field": "input"}
    report = validation.validate(
        path, target_field="target", max_rows=100, split_field="split", **kw
    )
    assert report.splits == {"train": 5, "validation": 2, "test": 3}
    assert report.dropped == {"bad_split": 1}
    assert "'holdout'" in report.problems[0].message
    out = tmp_path / "clean.jsonl"
    counts = validation.write_clean(
        path,
        out,
        target_field="target",
        seed=1,
        fractions=(0.8, 0.1, 0.1),
        stratify=False,
        max_rows=100,
        split_field="split",
        **kw,
    )
    assert counts == {"train": 5, "validation": 2, "test": 3}
    tests = [r["input"] for r in validation.read_clean(out, "test")]
    assert tests == ["c dialogue 0", "c dialogue 1", "c dialogue 2"]
    assert split_of(" Validation ") == "validation" and split_of(3) is None


def test_one_file_per_split_is_combined_with_its_split(tmp_path: Path) -> None:
    train, test = tmp_path / "train.csv", tmp_path / "test.jsonl"
    train.write_text("input,target\nhello there,hi\nbye now,bye\n")
    test.write_bytes(_jsonl(_rows("t", 2)))
    out = tmp_path / "all.jsonl"
    counts = combine_split_files(
        [("train", train, "csv"), ("test", test, "jsonl")], out, max_rows=100
    )
    assert counts == {"train": 2, "test": 2}
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["split"] for r in records] == ["train", "train", "test", "test"]


def test_uploading_train_and_test_files_saves_one_dataset_with_their_splits_and_licence(
    project: Project, owner: User
) -> None:
    client = client_for(owner)
    response = client.post(
        reverse("dataset_upload", args=[project.slug]),
        {
            "file": SimpleUploadedFile("dialogsum.train.jsonl", _jsonl(_rows("a", 8))),
            "validation_file": SimpleUploadedFile("dialogsum.dev.jsonl", _jsonl(_rows("b", 2))),
            "test_file": SimpleUploadedFile("dialogsum.test.jsonl", _jsonl(_rows("c", 3))),
            "text": "",
            "name": "DialogSum",
            "licence": "CC BY-NC-SA 4.0",
        },
    )
    assert response.status_code == 302
    staged_page = client.get(response["Location"])
    text = staged_page.content.decode()
    # The check before saving already shows the split counts.
    assert 'data-testid="split-counts"' in text and "<strong>8</strong> train" in text
    assert "<strong>2</strong> validation" in text and "<strong>3</strong> test" in text
    assert staged_page.context["form"].initial["split_field"] == "split"
    data = {
        "name": "DialogSum",
        "licence": "CC BY-NC-SA 4.0",
        "input_field": "input",
        "target_field": "target",
        "split_field": "split",
        "seed": "42",
        "train": "0.8",
        "validation": "0.1",
        "test": "0.1",
        "action": "save",
    }
    saved = client.post(response["Location"], data)
    assert saved.status_code == 302
    dataset = Dataset.objects.get()
    assert dataset.split_counts == {"train": 8, "validation": 2, "test": 3}
    assert dataset.split_source == "files" and dataset.licence == "CC BY-NC-SA 4.0"
    detail = client.get(saved["Location"]).content.decode()
    assert "one file per split" in detail and 'data-testid="next-step"' in detail


def test_the_model_card_names_the_training_datas_licence(
    project: Project, owner: User, tiny_model: CatalogModel, dialogues: Dataset
) -> None:
    from lifecycle_app.stages.deploy.services import card_info
    from workers.ml.export.variants import model_card

    dialogues.licence = "CC BY 4.0"
    dialogues.save(update_fields=["licence"])
    run = queued_run(project, owner, tiny_model, dialogues)
    candidate = cast(
        CatalogModel,
        CatalogModelFactory(slug="cand", project=project, trained_by_job=run, parent=tiny_model),
    )
    export = Job(
        project=project,
        kind=JobKind.EXPORT,
        base_model=candidate,
        params={"kind": "safetensors", "model_ref": "cand"},
    )
    card = model_card(card_info(export))
    assert "**Training data licence**: CC BY 4.0" in card
    template = run.params["template"]  # what /v1 and the bundle put requests into
    assert f"## Prompt template\n\nTrained and measured with **{template['name']}**" in card
    assert f"```text\n{template['body']}\n```" in card
    if tiny_model.licence:
        assert f"**Base model licence**: {tiny_model.licence}" in card


# --- share twins, viewers, refusals -----------------------------------------------------


def test_share_links_open_trials_a_trial_side_by_side_and_run_dashboards(
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    dialogues: Dataset,
    template: PromptTemplate,
) -> None:
    rows = [(1, "first"), (2, "second")]
    one = make_trial(project, template, dialogues, scores={"rougeL": 0.2}, rows=rows)
    two = make_trial(project, template, dialogues, scores={"rougeL": 0.3}, rows=rows)
    run = queued_run(project, owner, tiny_model, dialogues)
    link = share_link_create(project=project, actor=owner, lifetime=None)
    anonymous = Client()
    pages = {
        "trials": reverse("share_trial_list", args=[link.token]),
        "trial": reverse("share_trial_detail", args=[link.token, one.id]),
        "compare": reverse("share_trial_compare", args=[link.token]) + f"?t={one.id}&t={two.id}",
        "run": reverse("share_finetune_detail", args=[link.token, run.id]),
    }
    for name, url in pages.items():
        response = anonymous.get(url)
        text = response.content.decode()
        assert response.status_code == 200, name
        assert 'method="post"' not in text.split("</header>", 1)[1], name
        assert f"/p/{project.slug}/" not in text, name  # no member links, no downloads
        assert "download" not in text.lower().replace("downloaded", ""), name
    trials = anonymous.get(pages["trials"]).content.decode()
    assert reverse("share_trial_detail", args=[link.token, one.id]) in trials


def test_a_viewer_gets_disabled_fields_and_no_add_example_button(
    project: Project, teammate: User
) -> None:
    url = reverse("wizard_step", args=[project.slug, StageKey.SCOPE, "use-case"])
    text = client_for(teammate).get(url).content.decode()
    assert "Add another example" not in text
    assert 'name="use_case"' in text and "disabled" in text.split('name="use_case"')[1][:300]


def test_an_expected_refusal_is_logged_without_a_traceback() -> None:
    record = logging.LogRecord(
        "django.request", logging.WARNING, __file__, 1, "Forbidden", None, None
    )
    try:
        raise PermissionDenied("Viewers cannot change this project.")
    except PermissionDenied:
        import sys

        record.exc_info = sys.exc_info()
    assert ExpectedRefusalFilter().filter(record)
    assert record.exc_info is None and record.levelno == logging.INFO


def test_viewers_do_not_see_api_token_prefixes(
    project: Project, owner: User, teammate: User
) -> None:
    token, _raw = api_token_create(project=project, actor=owner, name="app")
    url = reverse("wizard_step", args=[project.slug, StageKey.INTEGRATE, "deploy"])
    assert token.prefix in client_for(owner).get(url).content.decode()
    assert token.prefix not in client_for(teammate).get(url).content.decode()


# --- blind ratings ----------------------------------------------------------------------


def test_a_rater_sees_the_sources_only_after_rating_every_row(
    project: Project, owner: User, tiny_model: CatalogModel
) -> None:
    a = make_rated_trial(project, owner, tiny_model, {n: f"answer A{n}" for n in range(1, 4)})
    b = make_rated_trial(project, owner, tiny_model, {n: f"answer B{n}" for n in range(1, 4)})
    rnd = align_services.round_create(
        project=project, user=owner, name="Round", trial_a=a, trial_b=b, max_items=20
    )
    url = reverse("round_detail", args=[project.slug, rnd.id])
    client = client_for(owner)
    before = client.get(url).content.decode()
    assert 'data-testid="blind-note"' in before and rnd.label_a not in before
    assert "answer A1" not in before
    for item in rnd.items.all():
        align_services.rating_save(item=item, rater=owner, side="left")
    after = client.get(url).content.decode()
    assert 'data-testid="sources"' in after and rnd.label_a in after


def test_a_finished_trial_and_run_say_what_to_do_next(
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    dialogues: Dataset,
    template: PromptTemplate,
) -> None:
    trial = make_trial(project, template, dialogues, scores={"rougeL": 0.2}, rows=[(1, "x")])
    page = client_for(owner).get(reverse("trial_detail", args=[project.slug, trial.id]))
    assert 'data-testid="next-step"' in page.content.decode()
    run = queued_run(project, owner, tiny_model, dialogues)
    Job.objects.filter(id=run.id).update(status=JobStatus.SUCCEEDED)
    CatalogModelFactory(slug="cand", project=project, trained_by_job=run, parent=tiny_model)
    text = client_for(owner).get(reverse("finetune_detail", args=[project.slug, run.id]))
    content = text.content.decode()
    assert 'data-testid="next-step"' in content and "Evaluate it" in content
    assert 'data-testid="schedule"' in content and "Learning rate 2.0e-04" in content


# --- evaluation pages -------------------------------------------------------------------


def _scope_on(project: Project, owner: User, metric: str, target: str) -> None:
    client_for(owner).post(
        reverse("wizard_step", args=[project.slug, StageKey.SCOPE, "use-case"]),
        scope_data(success_metric=metric, metric_target=target),
    )


def test_a_queued_evaluation_does_not_claim_the_target_is_unmeasured(
    project: Project, owner: User
) -> None:
    from tests.unit.test_views_evaluation import make_evaluation

    _scope_on(project, owner, "rouge_l", "0.3")
    pending = [{"label": "Base", "kind": "base", "status": "pending"}]
    job, _ = make_evaluation(project, owner, pending, status=JobStatus.QUEUED)
    text = client_for(owner).get(reverse("evaluation_detail", args=[project.slug, job.id]))
    assert "does not measure" not in text.content.decode()


def test_side_by_side_opens_on_the_baseline_against_the_best_candidate(
    project: Project, owner: User
) -> None:
    from tests.unit.test_views_evaluation import make_evaluation

    _scope_on(project, owner, "rouge_l", "0.3")
    job, (base, _weak, best, _mid) = make_evaluation(
        project,
        owner,
        [
            {"label": "Base", "kind": "base", "scores": {"rougeL": 0.1}, "row_scores": [0.1]},
            {"label": "Weak", "scores": {"rougeL": 0.15}, "row_scores": [0.15]},
            {"label": "Best", "scores": {"rougeL": 0.4}, "row_scores": [0.4]},
            {"label": "Mid", "scores": {"rougeL": 0.2}, "row_scores": [0.2]},
        ],
    )
    client = client_for(owner)
    page = client.get(reverse("evaluation_compare", args=[project.slug, job.id]))
    assert (page.context["a"], page.context["b"]) == (base, best)
    card = client.get(reverse("evaluation_detail", args=[project.slug, job.id]))
    assert f"?a={base.id}&amp;b={best.id}" in card.content.decode()
    overview = client.get(reverse("project_detail", args=[project.slug])).content.decode()
    assert 'data-testid="best-candidate"' in overview and "Best" in overview
    assert "passes" in overview
