"""Prompt templates and trials on the web side: templates and their versions, starting a
trial from the wizard (with the context-window preflight), the preview, the trials table,
side by side, the best trial, who may do what, and the worker-side services.

Expected token counts are measured here with the `tokenizers` package on text written out
by hand, not through the prompt kit the views use.
"""

from __future__ import annotations

import html
import json
import re
import shutil
from collections.abc import Callable, Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, cast

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from tokenizers import Tokenizer

import lifecycle_app
from lifecycle_app.datasets.services import Mapping, dataset_create_from_staged, dataset_stage_file
from lifecycle_app.models import (
    CatalogModel,
    Dataset,
    ExampleStatus,
    Job,
    JobKind,
    JobStatus,
    Project,
    PromptTemplate,
    Stage,
    StageKey,
    TrialExample,
)
from lifecycle_app.stages.prompt.building import snapshot
from lifecycle_app.stages.prompt.services import (
    template_create,
    trial_examples_init,
    trial_record_batch,
)
from tests.factories import CatalogModelFactory, make_project, prompt_data
from workers.ml.generation.batch import RowOutcome, TrialStats
from workers.ml.params import TrialParams
from workers.ml.prompts import BuiltPrompt

SAMPLES = Path(lifecycle_app.__file__).resolve().parent / "samples"
HTMX = {"HX-Request": "true"}
# What the pages' own polling sends: the element it replaces.
TABLE_POLL = {**HTMX, "HX-Target": "trials-table"}
LIVE_POLL = {**HTMX, "HX-Target": "trial-live"}
INSTRUCTION = "Summarize the dialogue in one sentence."
FIELDS: dict[str, Any] = {
    "instruction": INSTRUCTION,
    "example_format": "Dialogue: {input}\nSummary: {target}",
    "body": "{instruction}\n\n{examples}Dialogue: {input}\nSummary:",
    "use_chat_template": True,
}


# --- Fixtures and helpers -----------------------------------------------------------------


@pytest.fixture(autouse=True)
def storage(settings: Any, tmp_path: Path, tiny_folder: Path) -> Path:
    """Datasets under tmp_path; the tiny model's folder exists for the prompt kit."""
    datasets, uploads = tmp_path / "datasets", tmp_path / "uploads"
    datasets.mkdir()
    uploads.mkdir()
    settings.DATASETS_DIR = datasets
    settings.FILE_UPLOAD_TEMP_DIR = str(uploads)
    return uploads


def client_for(user: User | None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


@pytest.fixture
def client(owner: User) -> Client:
    return client_for(owner)


def make_dataset(
    project: Project, user: User, uploads: Path, *, classification: bool = False
) -> Dataset:
    if classification:
        sample, fields = SAMPLES / "support_intents.csv", ("text", "label")
    else:
        sample, fields = SAMPLES / "dialogue_summaries.jsonl", ("dialogue", "summary")
    incoming = uploads / f"incoming-{sample.name}"
    shutil.copyfile(sample, incoming)
    staged = dataset_stage_file(project=project, user=user, path=incoming, filename=sample.name)
    return dataset_create_from_staged(
        project=project,
        user=user,
        staged=staged,
        mapping=Mapping(
            input_field=fields[0],
            target_field=fields[1],
            classification=classification,
            seed=42,
            fractions=(0.8, 0.1, 0.1),
        ),
        name="Intents" if classification else "Dialogues",
        profile_model=None,
    )


@pytest.fixture
def dialogues(project: Project, owner: User, storage: Path) -> Dataset:
    return make_dataset(project, owner, storage)


@pytest.fixture
def template(project: Project, owner: User) -> PromptTemplate:
    return template_create(project=project, user=owner, name="Summarize", fields=FIELDS)


def split(dataset: Dataset, name: str) -> list[dict[str, Any]]:
    """The split's rows in file order, read straight from the clean file."""
    with dataset.clean_path.open(encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    return [r for r in records if r["split"] == name]


def written(shots: list[dict[str, Any]], row_input: str) -> str:
    """FIELDS' template filled in by hand (the tiny model has no chat template)."""
    examples = "".join(f"Dialogue: {s['input']}\nSummary: {s['target']}\n\n" for s in shots)
    return f"{INSTRUCTION}\n\n{examples}Dialogue: {row_input}\nSummary:"


def tokens(tiny_folder: Path, text: str) -> int:
    tokenizer = Tokenizer.from_file(str(tiny_folder / "tokenizer.json"))
    return len(tokenizer.encode(text, add_special_tokens=False).ids)


def trial_data(
    model: CatalogModel, dataset: Dataset, template: PromptTemplate, **overrides: Any
) -> dict[str, str]:
    data = {
        "base_model": model.slug,
        "dataset": str(dataset.id),
        "split": "validation",
        "n_rows": "4",
        "template": str(template.id),
        "shots": "1",
        "shot_mode": "first",
        "shot_seed": "0",
        "shot_lines": "",
        "overflow": "ask",
        "max_new_tokens": "16",
        "decoding": "greedy",
        "temperature": "0.7",
        "top_k": "50",
        "top_p": "0.95",
        "seed": "3",
        "repetition_penalty": "1.1",
    }
    data.update({k: str(v) for k, v in overrides.items()})
    return data


def step_url(project: Project) -> str:
    return reverse("wizard_step", args=[project.slug, StageKey.ADAPT, "prompt"])


def prompt_answers(project: Project) -> dict[str, Any]:
    step: dict[str, Any] = Stage.objects.get(project=project, key=StageKey.ADAPT).step("prompt")
    return step.get("answers", {})


def make_trial(
    project: Project,
    template: PromptTemplate,
    dataset: Dataset,
    *,
    scores: dict[str, float] | None = None,
    status: str = JobStatus.SUCCEEDED,
    shots: int = 0,
    rows: Sequence[tuple[int, str]] = (),
) -> Job:
    """A trial job as a worker leaves it; `rows` are (line, output) in run order."""
    params = TrialParams(
        model_ref="tiny",
        dataset_id=dataset.id,
        shots=shots,
        n_rows=max(len(rows), 1),
        template=snapshot(template),
    )
    result: dict[str, Any] = {}
    if scores is not None:
        result = {"scores": scores, "rows_done": len(rows), "tokens_per_second": 12.5}
    job = Job.objects.create(
        project=project,
        kind=JobKind.TRIAL,
        status=status,
        base_model=cast(CatalogModel, CatalogModelFactory()),
        dataset=dataset,
        prompt_template=template,
        params=params.model_dump(),
        progress_total=len(rows),
        progress_done=len(rows),
        progress_unit="rows",
        result=result,
    )
    TrialExample.objects.bulk_create(
        TrialExample(
            job=job,
            index=i,
            line=line,
            input=f"input of line {line}",
            prompt=f"prompt of line {line}",
            reference=f"reference of line {line}",
            output=output,
            status=ExampleStatus.DONE,
            scores={"rougeL": 0.25},
        )
        for i, (line, output) in enumerate(rows)
    )
    return job


class TableRows(HTMLParser):
    """The text of each cell of each body row of the table with `data-testid`."""

    def __init__(self, testid: str) -> None:
        super().__init__()
        self.testid = testid
        self.depth = 0  # >0 inside the table
        self.in_body = False
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table" and (self.depth or ("data-testid", self.testid) in attrs):
            self.depth += 1
        elif self.depth == 1 and tag == "tbody":
            self.in_body = True
        elif self.depth == 1 and self.in_body and tag == "tr":
            self.rows.append([])
        elif self.depth == 1 and self.in_body and tag == "td":
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "table" and self.depth:
            self.depth -= 1
        elif tag == "tbody":
            self.in_body = False
        elif tag == "td" and self.cell is not None and self.depth == 1:
            self.rows[-1].append(" ".join("".join(self.cell).split()))
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def table_rows(content: str, testid: str) -> list[list[str]]:
    parser = TableRows(testid)
    parser.feed(content)
    return parser.rows


def final_prompt(content: str) -> str:
    match = re.search(r'<pre class="prompt" data-testid="final-prompt">(.*?)</pre>', content, re.S)
    assert match, "no final prompt in the preview"
    return html.unescape(match.group(1))


# --- Templates ----------------------------------------------------------------------------


def test_the_new_template_page_suggests_a_summary_template(
    client: Client, project: Project
) -> None:
    response = client.get(reverse("template_new", args=[project.slug]))

    assert response.status_code == 200
    initial = response.context["form"].initial
    assert initial["name"] == "Summarize"
    assert "{examples}" in initial["body"]
    assert "New prompt template" in response.content.decode()


def test_a_classification_dataset_gets_a_classify_template_naming_its_labels(
    client: Client, project: Project, owner: User, storage: Path
) -> None:
    make_dataset(project, owner, storage, classification=True)

    response = client.get(reverse("template_new", args=[project.slug]))

    initial = response.context["form"].initial
    assert initial["name"] == "Classify"
    assert "Answer with one of: account, billing, shipping, technical." in initial["instruction"]
    assert initial["example_format"] == "Message: {input}\nCategory: {target}"


def test_saving_a_template_makes_version_one_and_returns_to_the_prompt_step(
    client: Client, project: Project, owner: User
) -> None:
    response = client.post(
        reverse("template_new", args=[project.slug]), {"name": " Short ", **FIELDS}
    )

    assert response.status_code == 302
    assert response["Location"] == step_url(project)
    template = PromptTemplate.objects.get()
    assert (template.name, template.version, template.created_by) == ("Short", 1, owner)
    assert {k: getattr(template, k) for k in FIELDS} == FIELDS


def test_a_taken_name_is_refused(
    client: Client, project: Project, template: PromptTemplate
) -> None:
    response = client.post(
        reverse("template_new", args=[project.slug]), {"name": "Summarize", **FIELDS}
    )

    assert response.status_code == 200
    assert response.context["form"].errors["name"] == [
        "A template called 'Summarize' exists; edit it to make a new version, or pick another name."
    ]
    assert PromptTemplate.objects.count() == 1


def test_placeholder_problems_are_shown_on_their_fields_and_nothing_is_saved(
    client: Client, project: Project
) -> None:
    response = client.post(
        reverse("template_new", args=[project.slug]),
        {
            "name": "Broken",
            "instruction": "Do it.",
            "example_format": "Q: {input}",
            "body": "{instruction}\n{examples}{dialogue}",
        },
    )

    content = response.content.decode()
    errors = response.context["form"].errors
    assert response.status_code == 200
    assert errors["body"] == [
        "Unknown placeholder {dialogue}: use {instruction}, {examples}, {input}.",
        "Put {input} where the row's input goes.",
    ]
    assert errors["example_format"] == ["Put {target} where the row's target goes."]
    assert "Unknown placeholder {dialogue}" in content
    assert html.escape("Put {target} where the row's target goes.") in content
    assert not PromptTemplate.objects.exists()


def test_editing_a_template_saves_version_two_and_old_trials_keep_version_one(
    client: Client, project: Project, template: PromptTemplate, dialogues: Dataset
) -> None:
    old_trial = make_trial(project, template, dialogues, scores={"rougeL": 0.3})
    new_body = "{instruction}\n\n{examples}Conversation: {input}\nShort summary:"

    response = client.post(
        reverse("template_detail", args=[project.slug, template.id]),
        {**FIELDS, "name": "Renamed?", "body": new_body, "note": "conversation wording"},
    )

    v2 = PromptTemplate.objects.get(version=2)
    assert response.status_code == 302
    assert response["Location"] == reverse("template_detail", args=[project.slug, v2.id])
    assert (v2.name, v2.body, v2.note) == ("Summarize", new_body, "conversation wording")
    template.refresh_from_db()
    assert (template.version, template.body) == (1, FIELDS["body"])
    old_trial.refresh_from_db()
    assert old_trial.prompt_template_id == template.id
    assert old_trial.params["template"]["version"] == 1
    assert old_trial.params["template"]["body"] == FIELDS["body"]
    page = client.get(response["Location"]).content.decode()
    assert "Saved version 2 of &#x27;Summarize&#x27;." in page
    assert "Saving writes version 3" in page


def test_an_edit_that_changes_nothing_makes_no_version(
    client: Client, project: Project, template: PromptTemplate
) -> None:
    url = reverse("template_detail", args=[project.slug, template.id])

    response = client.post(url, {**FIELDS, "note": "just looking"}, follow=True)

    assert PromptTemplate.objects.count() == 1
    assert response.redirect_chain == [(url, 302)]
    assert "Nothing changed, so no new version was saved." in response.content.decode()


def test_a_template_edit_with_a_placeholder_problem_is_refused(
    client: Client, project: Project, template: PromptTemplate
) -> None:
    response = client.post(
        reverse("template_detail", args=[project.slug, template.id]),
        {**FIELDS, "body": "{instruction} {examples}"},
    )

    assert response.status_code == 200
    assert response.context["form"].errors["body"] == ["Put {input} where the row's input goes."]
    assert PromptTemplate.objects.count() == 1


# --- Starting a trial from the wizard -----------------------------------------------------


def test_a_valid_trial_post_queues_one_trial_and_redirects_to_its_page(
    client: Client,
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    template: PromptTemplate,
    storage: Path,
    enqueued: list[int],
    django_capture_on_commit_callbacks: Any,
) -> None:
    intents = make_dataset(project, owner, storage, classification=True)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            step_url(project), trial_data(tiny_model, intents, template, n_rows=5, shots=2)
        )

    job = Job.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("trial_detail", args=[project.slug, job.id])
    assert enqueued == [job.id]
    assert (job.kind, job.status, job.created_by) == (JobKind.TRIAL, JobStatus.QUEUED, owner)
    assert (job.base_model, job.dataset, job.prompt_template) == (tiny_model, intents, template)
    assert (job.progress_total, job.progress_done, job.progress_unit) == (5, 0, "rows")
    params = TrialParams(**job.params)
    assert params.score_kind == "label"
    assert (params.n_rows, params.shots, params.split, params.seed) == (5, 2, "validation", 3)
    assert params.template.model_dump() == {
        "id": template.id,
        "name": "Summarize",
        "version": 1,
        **FIELDS,
        "shot_style": "chat",
    }
    assert prompt_answers(project)["last_trial"] == job.id


def test_a_trial_over_more_rows_than_the_split_has_runs_the_whole_split(
    client: Client,
    project: Project,
    tiny_model: CatalogModel,
    template: PromptTemplate,
    dialogues: Dataset,
) -> None:
    response = client.post(
        step_url(project), trial_data(tiny_model, dialogues, template, n_rows=500)
    )

    job = Job.objects.get()
    assert response.status_code == 302
    assert job.progress_total == len(split(dialogues, "validation")) < 500
    assert job.params["score_kind"] == "rouge"


def test_an_htmx_trial_post_answers_with_an_hx_location(
    client: Client,
    project: Project,
    tiny_model: CatalogModel,
    template: PromptTemplate,
    dialogues: Dataset,
) -> None:
    response = client.post(
        step_url(project), trial_data(tiny_model, dialogues, template), headers=HTMX
    )

    job = Job.objects.get()
    assert response.status_code == 200
    location = json.loads(response["HX-Location"])
    assert location["path"] == reverse("trial_detail", args=[project.slug, job.id])


def over_long_setup(
    tiny_model: CatalogModel, dialogues: Dataset, tiny_folder: Path, n_rows: int, max_new: int
) -> tuple[list[int], int]:
    """Shrink the tiny model's context so some of the first `n_rows` one-shot prompts no
    longer fit; returns their token counts and the budget."""
    shot = split(dialogues, "train")[0]
    rows = split(dialogues, "validation")[:n_rows]
    counts = [tokens(tiny_folder, written([shot], r["input"])) for r in rows]
    budget = sorted(counts)[n_rows // 2 - 1]
    assert 0 < sum(c > budget for c in counts) < n_rows  # the test's own premise
    tiny_model.context_length = budget + max_new
    tiny_model.save(update_fields=["context_length"])
    return counts, budget


def test_over_long_prompts_with_ask_start_nothing_and_say_how_many_and_by_how_much(
    client: Client,
    project: Project,
    tiny_model: CatalogModel,
    template: PromptTemplate,
    dialogues: Dataset,
    tiny_folder: Path,
    enqueued: list[int],
    django_capture_on_commit_callbacks: Any,
) -> None:
    counts, budget = over_long_setup(tiny_model, dialogues, tiny_folder, 6, 16)
    over = [c - budget for c in counts if c > budget]

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            step_url(project), trial_data(tiny_model, dialogues, template, n_rows=6)
        )

    assert response.status_code == 200
    message = (
        f"{len(over)} of 6 prompts exceed the model's budget of {budget} tokens (context "
        f"window minus max new tokens) by up to {max(over)} tokens. Choose to truncate or "
        "skip those rows, or use fewer shots or fewer new tokens."
    )
    assert response.context["form"].errors["overflow"] == [message]
    assert html.escape(message) in response.content.decode()
    assert not Job.objects.exists()
    assert enqueued == []


@pytest.mark.parametrize("overflow", ["skip", "truncate"])
def test_over_long_prompts_run_when_told_to_skip_or_truncate_them(
    client: Client,
    project: Project,
    tiny_model: CatalogModel,
    template: PromptTemplate,
    dialogues: Dataset,
    tiny_folder: Path,
    overflow: str,
) -> None:
    over_long_setup(tiny_model, dialogues, tiny_folder, 6, 16)

    response = client.post(
        step_url(project),
        trial_data(tiny_model, dialogues, template, n_rows=6, overflow=overflow),
    )

    job = Job.objects.get()
    assert response.status_code == 302
    assert job.params["overflow"] == overflow
    assert job.progress_total == 6


def test_more_new_tokens_than_the_context_window_is_refused(
    client: Client,
    project: Project,
    tiny_model: CatalogModel,
    template: PromptTemplate,
    dialogues: Dataset,
) -> None:
    tiny_model.context_length = 64
    tiny_model.save(update_fields=["context_length"])

    response = client.post(
        step_url(project), trial_data(tiny_model, dialogues, template, max_new_tokens=64)
    )

    assert response.status_code == 200
    assert response.context["form"].errors["max_new_tokens"] == [
        "Tiny test model has a context window of 64 tokens; ask for fewer new tokens."
    ]
    assert not Job.objects.exists()


def test_manual_shots_on_lines_outside_the_train_split_are_refused(
    client: Client,
    project: Project,
    tiny_model: CatalogModel,
    template: PromptTemplate,
    dialogues: Dataset,
) -> None:
    line = split(dialogues, "validation")[0]["line"]

    response = client.post(
        step_url(project),
        trial_data(tiny_model, dialogues, template, shot_mode="manual", shot_lines=str(line)),
    )

    assert response.status_code == 200
    assert response.context["form"].non_field_errors() == [
        f"Line {line} is not in the train split; pick rows from the train split."
    ]
    assert not Job.objects.exists()


# --- Preview ------------------------------------------------------------------------------


def test_the_preview_shows_the_exact_prompt_of_the_row_and_that_all_fit(
    client: Client,
    project: Project,
    tiny_model: CatalogModel,
    template: PromptTemplate,
    dialogues: Dataset,
    tiny_folder: Path,
) -> None:
    shots = split(dialogues, "train")[:2]
    row = split(dialogues, "validation")[1]
    expected = written(shots, row["input"])

    response = client.get(
        reverse("prompt_preview", args=[project.slug]),
        {**trial_data(tiny_model, dialogues, template, shots=2), "row": "1"},
        headers=HTMX,
    )

    content = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in content
    assert final_prompt(content) == expected
    assert f"this prompt is {tokens(tiny_folder, expected)} tokens" in content
    assert "Exact prompt · row 2 of 4" in content
    assert 'data-testid="fits"' in content
    assert 'data-testid="overflow-warning"' not in content
    assert "This model has no chat template, so the text goes in as it is." in content


def test_the_preview_warns_about_prompts_over_the_context_window(
    client: Client,
    project: Project,
    tiny_model: CatalogModel,
    template: PromptTemplate,
    dialogues: Dataset,
    tiny_folder: Path,
) -> None:
    counts, budget = over_long_setup(tiny_model, dialogues, tiny_folder, 6, 16)
    rows = split(dialogues, "validation")[:6]
    over_lines = [r["line"] for r, c in zip(rows, counts, strict=True) if c > budget]

    response = client.get(
        reverse("prompt_preview", args=[project.slug]),
        trial_data(tiny_model, dialogues, template, n_rows=6),
    )

    content = response.content.decode()
    match = re.search(r'data-testid="overflow-warning">(.*?)</p>', content, re.S)
    assert match
    assert html.unescape(match.group(1)) == (
        f"{len(over_lines)} of 6 prompts exceed the model's budget of {budget} tokens "
        f"(context window minus max new tokens) by up to {max(counts) - budget} tokens. "
        f"Lines: {', '.join(map(str, over_lines))}."
    )
    assert 'data-testid="fits"' not in content


def test_the_preview_of_a_truncated_row_shows_the_prompt_that_will_run(
    client: Client,
    project: Project,
    tiny_model: CatalogModel,
    template: PromptTemplate,
    dialogues: Dataset,
    tiny_folder: Path,
) -> None:
    counts, budget = over_long_setup(tiny_model, dialogues, tiny_folder, 6, 16)
    index = counts.index(max(counts))  # a row that is truncated
    shot = split(dialogues, "train")[0]

    response = client.get(
        reverse("prompt_preview", args=[project.slug]),
        {
            **trial_data(tiny_model, dialogues, template, n_rows=6, overflow="truncate"),
            "row": str(index),
        },
    )

    content = response.content.decode()
    shown = final_prompt(content)
    assert "(input truncated)" in content
    # What the preview shows is what the model gets: it fits the budget...
    assert tokens(tiny_folder, shown) <= budget
    # ...and it is the row's prompt with its input cut, instruction and shot intact.
    assert shown.startswith(written([shot], "").removesuffix("\nSummary:"))
    assert shown.endswith("\nSummary:")


def test_the_preview_lists_what_to_fix_when_the_form_is_incomplete(
    client: Client, project: Project, tiny_model: CatalogModel, dialogues: Dataset
) -> None:
    response = client.get(
        reverse("prompt_preview", args=[project.slug]),
        {"base_model": tiny_model.slug, "dataset": str(dialogues.id)},
    )

    assert response.status_code == 200
    assert "Fix the form to see the exact prompt:" in response.content.decode()
    assert "Create a prompt template first." in response.content.decode()


# --- Trials table, detail, side by side ---------------------------------------------------


def listed(content: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr data-trial="(\d+)"', content)]


def test_the_trials_table_sorts_by_a_metric_both_ways_with_unscored_trials_last(
    client: Client, project: Project, template: PromptTemplate, dialogues: Dataset
) -> None:
    mid = make_trial(project, template, dialogues, scores={"rougeL": 0.2, "rouge1": 0.9})
    top = make_trial(project, template, dialogues, scores={"rougeL": 0.5, "rouge1": 0.1})
    running = make_trial(project, template, dialogues, status=JobStatus.RUNNING)
    low = make_trial(project, template, dialogues, scores={"rougeL": 0.1, "rouge1": 0.5})
    url = reverse("trial_list", args=[project.slug])

    desc = client.get(url, {"sort": "rougeL", "dir": "desc"}).content.decode()
    asc = client.get(url, {"sort": "rougeL", "dir": "asc"}).content.decode()
    by_rouge1 = client.get(url, {"sort": "rouge1", "dir": "desc"}).content.decode()
    unknown = client.get(url, {"sort": "nonsense"}).content.decode()

    assert listed(desc) == [top.id, mid.id, low.id, running.id]
    assert listed(asc) == [low.id, mid.id, top.id, running.id]
    assert listed(by_rouge1) == [mid.id, low.id, top.id, running.id]
    assert listed(unknown) == [low.id, running.id, top.id, mid.id]  # newest first
    assert "ROUGE-L ▼" in desc
    assert "ROUGE-L ▲" in asc
    assert 'href="?sort=rougeL&dir=asc"' in desc


def test_the_trials_table_answers_htmx_with_its_fragment_polling_while_one_runs(
    client: Client, project: Project, template: PromptTemplate, dialogues: Dataset
) -> None:
    make_trial(project, template, dialogues, status=JobStatus.RUNNING)

    content = client.get(
        reverse("trial_list", args=[project.slug]), headers=TABLE_POLL
    ).content.decode()

    assert "<html" not in content
    assert content.lstrip().startswith('<div id="trials-table"')
    assert 'hx-trigger="every 2s"' in content


def test_the_trials_table_needs_as_many_queries_for_2_or_8_trials(
    client: Client,
    project: Project,
    template: PromptTemplate,
    dialogues: Dataset,
    django_assert_max_num_queries: Callable[..., Any],
) -> None:
    url = reverse("trial_list", args=[project.slug])
    for _ in range(2):
        make_trial(project, template, dialogues, scores={"rougeL": 0.2})
    client.get(url)
    with CaptureQueriesContext(connection) as two:
        client.get(url)

    for _ in range(6):
        make_trial(project, template, dialogues, scores={"rougeL": 0.2})
    with django_assert_max_num_queries(len(two.captured_queries)):
        response = client.get(url)

    assert len(listed(response.content.decode())) == 8


def test_the_trial_page_shows_rows_and_answers_htmx_with_the_live_fragment(
    client: Client, project: Project, template: PromptTemplate, dialogues: Dataset
) -> None:
    job = make_trial(
        project, template, dialogues, status=JobStatus.RUNNING, rows=[(7, "The printer.")]
    )
    url = reverse("trial_detail", args=[project.slug, job.id])

    page = client.get(url).content.decode()
    fragment = client.get(url, headers=LIVE_POLL).content.decode()

    assert "<html" in page
    assert f"Prompt trial #{job.id}" in page
    assert "reference of line 7" in page
    assert "<html" not in fragment
    assert fragment.lstrip().startswith('<div id="trial-live"')
    assert 'data-status="running"' in fragment
    assert 'hx-trigger="every 1s"' in fragment
    job.status = JobStatus.SUCCEEDED
    job.save(update_fields=["status"])
    finished = client.get(url, headers=LIVE_POLL).content.decode()
    assert 'data-status="succeeded"' in finished
    assert "hx-trigger" not in finished


def test_the_trial_page_needs_as_many_queries_for_1_or_30_rows(
    client: Client,
    project: Project,
    template: PromptTemplate,
    dialogues: Dataset,
    django_assert_max_num_queries: Callable[..., Any],
) -> None:
    small = make_trial(project, template, dialogues, scores={"rougeL": 0.2}, rows=[(1, "a")])
    large = make_trial(
        project, template, dialogues, scores={"rougeL": 0.2}, rows=[(n, "b") for n in range(30)]
    )
    client.get(reverse("trial_detail", args=[project.slug, small.id]), headers=LIVE_POLL)
    with CaptureQueriesContext(connection) as one:
        client.get(reverse("trial_detail", args=[project.slug, small.id]), headers=LIVE_POLL)

    with django_assert_max_num_queries(len(one.captured_queries)):
        client.get(reverse("trial_detail", args=[project.slug, large.id]), headers=LIVE_POLL)


def test_the_job_page_of_a_trial_redirects_to_the_trial_page(
    client: Client, project: Project, template: PromptTemplate, dialogues: Dataset
) -> None:
    job = make_trial(project, template, dialogues)

    response = client.get(reverse("job_detail", args=[project.slug, job.id]))

    assert response.status_code == 302
    assert response["Location"] == reverse("trial_detail", args=[project.slug, job.id])


def test_side_by_side_aligns_the_rows_both_trials_ran_by_line(
    client: Client, project: Project, template: PromptTemplate, dialogues: Dataset
) -> None:
    first = make_trial(
        project,
        template,
        dialogues,
        scores={"rougeL": 0.3},
        rows=[(7, "A on seven"), (3, "A on three"), (12, "A on twelve")],
    )
    second = make_trial(
        project,
        template,
        dialogues,
        scores={"rougeL": 0.4},
        shots=2,
        rows=[(3, "B on three"), (7, "B on seven"), (40, "B on forty")],
    )

    response = client.get(
        reverse("trial_compare", args=[project.slug]), {"t": [first.id, second.id]}
    )

    content = response.content.decode()
    assert response.status_code == 200
    rows = table_rows(content, "side-by-side")
    assert [r[0] for r in rows] == ["7", "3"]
    assert "Reference: reference of line 7" in rows[0][1]
    assert rows[0][2].startswith("A on seven")
    assert rows[0][3].startswith("B on seven")
    assert rows[1][2].startswith("A on three")
    assert rows[1][3].startswith("B on three")
    assert f"#{second.id} · 2-shot" in content
    assert "only the rows every one of them ran are shown" in content
    assert len(table_rows(content, "compare-summary")) == 2


def test_side_by_side_needs_two_trials_of_this_project(
    client: Client,
    project: Project,
    owner: User,
    template: PromptTemplate,
    dialogues: Dataset,
) -> None:
    mine = make_trial(project, template, dialogues, scores={"rougeL": 0.3}, rows=[(1, "a")])
    elsewhere = make_project(owner, name="Elsewhere")
    other_template = template_create(project=elsewhere, user=owner, name="X", fields=FIELDS)
    theirs = make_trial(elsewhere, other_template, dialogues, scores={"rougeL": 0.3})
    url = reverse("trial_compare", args=[project.slug])

    for query in ({}, {"t": [mine.id]}, {"t": [mine.id, mine.id]}, {"t": [mine.id, theirs.id]}):
        response = client.get(url, query)

        content = response.content.decode()
        assert response.status_code == 200, query
        assert 'data-testid="too-few"' in content, query
        assert 'data-testid="side-by-side"' not in content, query


# --- The best trial -----------------------------------------------------------------------


def test_marking_the_best_trial_shows_it_on_the_project_page(
    client: Client, project: Project, template: PromptTemplate, dialogues: Dataset
) -> None:
    job = make_trial(
        project, template, dialogues, scores={"rougeL": 0.42}, shots=1, rows=[(1, "a")]
    )
    assert (
        'data-testid="best-trial"'
        not in client.get(reverse("project_detail", args=[project.slug])).content.decode()
    )

    response = client.post(reverse("trial_best", args=[project.slug, job.id]))

    assert response.status_code == 302
    assert response["Location"] == reverse("trial_detail", args=[project.slug, job.id])
    assert prompt_answers(project)["best_trial"] == job.id
    content = client.get(reverse("project_detail", args=[project.slug])).content.decode()
    card = re.search(r'data-testid="best-trial">(.*?)</div>', content, re.S)
    assert card
    text = " ".join(re.sub(r"<[^>]+>", "", card.group(1)).split())
    assert f"Trial #{job.id}: Summarize v1, 1-shot, Tiny test model on 1 validation rows" in text
    assert "ROUGE-L 0.420" in text
    detail = client.get(response["Location"]).content.decode()
    assert "★ current best" in detail
    assert 'data-testid="mark-best"' not in detail


def test_marking_the_best_trial_from_the_list_returns_to_the_list(
    client: Client, project: Project, template: PromptTemplate, dialogues: Dataset
) -> None:
    job = make_trial(project, template, dialogues, scores={"rougeL": 0.42})

    response = client.post(reverse("trial_best", args=[project.slug, job.id]), {"back": "list"})

    assert response["Location"] == reverse("trial_list", args=[project.slug])


# --- Who may do what ----------------------------------------------------------------------


@pytest.fixture
def world(
    project: Project,
    tiny_model: CatalogModel,
    template: PromptTemplate,
    dialogues: Dataset,
) -> dict[str, Any]:
    first = make_trial(project, template, dialogues, scores={"rougeL": 0.3}, rows=[(1, "a")])
    second = make_trial(project, template, dialogues, scores={"rougeL": 0.4}, rows=[(1, "b")])
    return {
        "project": project,
        "model": tiny_model,
        "template": template,
        "dataset": dialogues,
        "first": first,
        "second": second,
    }


def _get_urls(w: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    slug = w["project"].slug
    return [
        (reverse("trial_list", args=[slug]), {}),
        (reverse("trial_detail", args=[slug, w["first"].id]), {}),
        (reverse("trial_compare", args=[slug]), {"t": [w["first"].id, w["second"].id]}),
        (reverse("template_new", args=[slug]), {}),
        (reverse("template_detail", args=[slug, w["template"].id]), {}),
        (
            reverse("prompt_preview", args=[slug]),
            trial_data(w["model"], w["dataset"], w["template"]),
        ),
        (reverse("playground", args=[slug]), {}),
        (step_url(w["project"]), {}),
    ]


def _post_urls(w: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    slug = w["project"].slug
    return [
        (reverse("template_new", args=[slug]), {"name": "Viewer's", **FIELDS}),
        (
            reverse("template_detail", args=[slug, w["template"].id]),
            {**FIELDS, "body": "{input} changed"},
        ),
        (reverse("trial_best", args=[slug, w["first"].id]), {}),
        (step_url(w["project"]), trial_data(w["model"], w["dataset"], w["template"])),
        (reverse("playground", args=[slug]), prompt_data(w["model"])),
    ]


def _state() -> tuple[int, int, list[Any]]:
    answers = [s.steps for s in Stage.objects.order_by("id")]
    return Job.objects.count(), PromptTemplate.objects.count(), answers


def test_a_viewer_reads_every_trial_page_but_posts_nothing(
    world: dict[str, Any], teammate: User
) -> None:
    viewer = client_for(teammate)
    for url, query in _get_urls(world):
        assert viewer.get(url, query).status_code == 200, url

    before = _state()
    for url, data in _post_urls(world):
        assert viewer.post(url, data).status_code == 403, url
    assert _state() == before


def test_the_owner_may_post_every_trial_form(world: dict[str, Any], client: Client) -> None:
    # The same posts a viewer is refused succeed for the owner (so the 403s mean something).
    for url, data in _post_urls(world):
        assert client.post(url, data).status_code == 302, url


def test_an_outsider_gets_404_everywhere(world: dict[str, Any], outsider: User) -> None:
    stranger = client_for(outsider)
    before = _state()

    for url, query in _get_urls(world):
        assert stranger.get(url, query).status_code == 404, url
    for url, data in _post_urls(world):
        assert stranger.post(url, data).status_code == 404, url
    assert _state() == before


def test_an_anonymous_visitor_is_sent_to_log_in(world: dict[str, Any]) -> None:
    anonymous = Client()

    for url, query in _get_urls(world):
        response = anonymous.get(url, query)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login")), url


def test_trial_views_refuse_the_wrong_method(world: dict[str, Any], client: Client) -> None:
    slug = world["project"].slug

    assert client.get(reverse("trial_best", args=[slug, world["first"].id])).status_code == 405
    for name in ("trial_list", "trial_compare", "prompt_preview"):
        assert client.post(reverse(name, args=[slug])).status_code == 405, name
    detail = reverse("trial_detail", args=[slug, world["first"].id])
    assert client.post(detail).status_code == 405


def test_a_trial_of_another_project_is_404_through_this_one(
    client: Client, project: Project, owner: User, dialogues: Dataset
) -> None:
    elsewhere = make_project(owner, name="Elsewhere")
    other_template = template_create(project=elsewhere, user=owner, name="X", fields=FIELDS)
    theirs = make_trial(elsewhere, other_template, dialogues)

    assert client.get(reverse("trial_detail", args=[project.slug, theirs.id])).status_code == 404
    assert client.post(reverse("trial_best", args=[project.slug, theirs.id])).status_code == 404
    template_url = reverse("template_detail", args=[project.slug, other_template.id])
    assert client.get(template_url).status_code == 404


# --- Worker-side services -----------------------------------------------------------------


def built_prompt(index: int, *, skipped: str = "") -> BuiltPrompt:
    return BuiltPrompt(
        index=index,
        line=20 + index,
        input=f"input {index}",
        reference=f"reference {index}",
        text="" if skipped else f"prompt {index}",
        tokens=10 + index,
        truncated=index == 1,
        skipped=skipped,
    )


def test_examples_init_writes_pending_and_skipped_rows_and_replaces_earlier_ones(
    project: Project, template: PromptTemplate, dialogues: Dataset
) -> None:
    job = make_trial(project, template, dialogues, rows=[(99, "from an earlier attempt")])

    trial_examples_init(
        job_id=job.id,
        prompts=[built_prompt(0), built_prompt(1), built_prompt(2, skipped="Skipped: 5 over.")],
    )

    rows = list(TrialExample.objects.filter(job=job).order_by("index"))
    assert [(r.index, r.line, r.status) for r in rows] == [
        (0, 20, ExampleStatus.PENDING),
        (1, 21, ExampleStatus.PENDING),
        (2, 22, ExampleStatus.SKIPPED),
    ]
    assert (rows[1].prompt, rows[1].prompt_tokens, rows[1].truncated) == ("prompt 1", 11, True)
    assert (rows[2].prompt, rows[2].error) == ("", "Skipped: 5 over.")
    assert rows[0].reference == "reference 0"


def test_record_batch_fills_its_rows_and_the_running_totals(
    project: Project, template: PromptTemplate, dialogues: Dataset
) -> None:
    job = make_trial(project, template, dialogues, status=JobStatus.RUNNING)
    trial_examples_init(
        job_id=job.id,
        prompts=[built_prompt(i) for i in range(3)] + [built_prompt(3, skipped="Skipped")],
    )
    stats = TrialStats(
        rows_total=4,
        rows_done=1,
        rows_failed=1,
        rows_skipped=1,
        output_tokens=8,
        seconds=2.0,
        batch_size=2,
        batches=1,
        scores={"rougeL": 0.5},
    )

    trial_record_batch(
        job_id=job.id,
        outcomes=[
            RowOutcome(2, "done", "an output", 8, "length", {"rougeL": 0.5}),
            RowOutcome(0, "failed", error="RuntimeError: boom"),
        ],
        stats=stats,
        extra={"device": "cpu", "shots": 0},
    )

    job.refresh_from_db()
    rows = {r.index: r for r in TrialExample.objects.filter(job=job)}
    assert (rows[2].status, rows[2].output, rows[2].output_tokens) == ("done", "an output", 8)
    assert (rows[2].finish_reason, rows[2].scores) == ("length", {"rougeL": 0.5})
    assert (rows[0].status, rows[0].error) == ("failed", "RuntimeError: boom")
    assert rows[1].status == ExampleStatus.PENDING
    assert rows[3].status == ExampleStatus.SKIPPED
    assert job.progress_done == 3  # done + failed + skipped
    assert job.message == "Generated 2 of 3 rows"
    assert job.result["scores"] == {"rougeL": 0.5}
    assert job.result["tokens_per_second"] == 4.0
    assert (job.result["rows_done"], job.result["device"]) == (1, "cpu")


def test_shots_with_a_template_that_has_no_examples_placeholder_are_refused(
    client: Client,
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    dialogues: Dataset,
    enqueued: list[int],
) -> None:
    bare = template_create(
        project=project,
        user=owner,
        name="No examples",
        fields={**FIELDS, "body": "{instruction}\n{input}\nSummary:"},
    )

    response = client.post(step_url(project), trial_data(tiny_model, dialogues, bare, shots="2"))

    assert response.status_code == 200
    assert "has no {examples} placeholder" in response.content.decode()
    assert not Job.objects.filter(kind=JobKind.TRIAL).exists()
    assert enqueued == []
