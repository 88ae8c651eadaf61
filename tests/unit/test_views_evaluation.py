"""Evaluation on the web side: starting one from the Evaluate step, the scorecard (changes
against the chosen baseline, best values, the Scope target, unavailable candidates), side
by side sorted by score difference, exports, share pages, access, htmx, query counts, and
the availability rules."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from lifecycle_app.models import (
    Activity,
    CandidateStatus,
    CatalogModel,
    Dataset,
    EvaluationCandidate,
    EvaluationExample,
    Job,
    JobKind,
    JobStatus,
    Project,
    PromptTemplate,
    StageKey,
)
from lifecycle_app.projects.services import stage_step_save
from lifecycle_app.stages.evaluate import candidates as evaluating
from lifecycle_app.stages.evaluate import scorecard
from lifecycle_app.stages.prompt.services import template_create
from lifecycle_app.teams.services import share_link_create
from tests.factories import JobFactory
from tests.integration.sample_data import sample_dialogues

HTMX = {"HX-Request": "true"}
LIVE_POLL = {**HTMX, "HX-Target": "eval-live"}


@pytest.fixture(autouse=True)
def storage(settings: Any, tmp_path: Path, tiny_folder: Path) -> Path:
    datasets, uploads = tmp_path / "datasets", tmp_path / "uploads"
    datasets.mkdir()
    uploads.mkdir()
    settings.DATASETS_DIR = datasets
    settings.FILE_UPLOAD_TEMP_DIR = str(uploads)
    return uploads


@pytest.fixture
def client(owner: User) -> Client:
    c = Client()
    c.force_login(owner)
    return c


@pytest.fixture
def dialogues(project: Project, owner: User, storage: Path) -> Dataset:
    return sample_dialogues(project, owner, storage, fractions=(0.7, 0.1, 0.2))


@pytest.fixture
def template(project: Project, owner: User) -> PromptTemplate:
    return template_create(
        project=project,
        user=owner,
        name="Summarize",
        fields={
            "instruction": "Summarize the dialogue.",
            "example_format": "Dialogue: {input}\nSummary: {target}",
            "body": "{instruction}\n\n{examples}Dialogue: {input}\nSummary:",
            "use_chat_template": True,
        },
    )


SPEC: dict[str, Any] = {
    "shots": 0,
    "template": {"name": "Summarize", "version": 1},
    "generation": {},
}


def make_evaluation(
    project: Project,
    owner: User,
    candidates: list[dict[str, Any]],
    *,
    status: str = JobStatus.SUCCEEDED,
) -> tuple[Job, list[EvaluationCandidate]]:
    """An evaluation with candidates as given: label, kind, status, scores, general,
    row_scores (one per row: the rows' rougeL)."""
    job = JobFactory.create(
        project=project,
        created_by=owner,
        kind=JobKind.EVALUATE,
        status=status,
        params={"split": "test", "n_rows": 3, "sample_seed": 0, "task": "text"},
        result={"rows": 3},
    )
    made = []
    for i, c in enumerate(candidates):
        candidate = EvaluationCandidate.objects.create(
            job=job,
            position=i,
            label=c["label"],
            kind=c.get("kind", "trial"),
            status=c.get("status", CandidateStatus.DONE),
            reason=c.get("reason", ""),
            spec={**SPEC, "shots": c.get("shots", 0)},
            scores=c.get("scores", {}),
            general_scores=c.get("general", {}),
        )
        for row, value in enumerate(c.get("row_scores", [])):
            EvaluationExample.objects.create(
                candidate=candidate,
                index=row,
                line=row + 1,
                input=f"dialogue {row}",
                reference=f"reference {row}",
                output=f"{c['label']} output {row}",
                status="done",
                scores={"rougeL": value},
            )
        made.append(candidate)
    return job, made


THREE: list[dict[str, Any]] = [
    {
        "label": "Base zero-shot",
        "kind": "base",
        "scores": {"rougeL": 0.2, "perplexity": 20.0},
        "general": {"answer_match": 0.5, "perplexity": 10.0},
        "row_scores": [0.1, 0.2, 0.3],
    },
    {
        "label": "Trial 2-shot",
        "shots": 2,
        "scores": {"rougeL": 0.3, "perplexity": 18.0},
        "general": {"answer_match": 0.5, "perplexity": 10.0},
        "row_scores": [0.5, 0.1, 0.3],
    },
    {
        "label": "LoRA #9",
        "kind": "finetuned",
        "scores": {"rougeL": 0.25, "perplexity": 12.0},
        "general": {"answer_match": 0.4, "perplexity": 11.0},
        "row_scores": [0.2, 0.6, 0.3],
    },
]


def found(pattern: str, text: str) -> str:
    match = re.search(pattern, text, re.S)
    assert match, f"{pattern!r} not found"
    return match.group(1) if match.groups() else match.group(0)


def chart_of(page: str) -> dict[str, Any]:
    return dict(json.loads(found(r'id="scorecard-data"[^>]*>(.*?)</script>', page)))


def cell_text(html: str, candidate: EvaluationCandidate, metric: str) -> list[str]:
    row = found(rf'data-candidate="{candidate.id}".*?</tr>', html)
    cell = re.search(rf'<td class="num[^"]*" data-metric="{metric}">(.*?)</td>', row, re.S)
    assert cell, f"no {metric} cell for {candidate.label}"
    return re.sub(r"<[^>]+>", " ", cell.group(1)).split()


# --- Scorecard --------------------------------------------------------------------------


def test_the_scorecard_shows_changes_against_the_zero_shot_base_by_default(
    client: Client, project: Project, owner: User
) -> None:
    _job, (base, trial, lora) = make_evaluation(project, owner, THREE)
    response = client.get(reverse("scorecard", args=[project.slug]))
    assert response.status_code == 200
    page = response.content.decode()
    assert cell_text(page, base, "rougeL") == ["0.200"]
    assert cell_text(page, trial, "rougeL") == ["0.300", "+0.100", "(+50.0%)"]
    assert cell_text(page, lora, "perplexity") == ["12.000", "-8.000", "(-40.0%)"]
    assert 'data-testid="delta"' in page
    # Best per column: the trial on ROUGE-L, the LoRA model on perplexity (lower is better).
    assert re.search(
        rf'data-candidate="{trial.id}".*?class="num best" data-metric="rougeL"', page, re.S
    )
    assert re.search(
        rf'data-candidate="{lora.id}".*?class="num best" data-metric="perplexity"', page, re.S
    )
    # The forgetting check sits next to the task scores: LoRA lost 0.1 answer match.
    assert "-0.100" in found(rf'data-candidate="{lora.id}".*?</tr>', page)
    chart = chart_of(page)
    assert chart["candidates"] == ["Base zero-shot", "Trial 2-shot", "LoRA #9"]
    assert chart["baseline"] == 0
    assert chart["metrics"][0]["values"] == [0.2, 0.3, 0.25]


def test_a_chosen_baseline_changes_every_change(
    client: Client, project: Project, owner: User
) -> None:
    job, (base, trial, _) = make_evaluation(project, owner, THREE)
    url = reverse("evaluation_detail", args=[project.slug, job.id])
    page = client.get(url, {"baseline": trial.id}).content.decode()
    assert cell_text(page, base, "rougeL") == ["0.200", "-0.100", "(-33.3%)"]
    assert cell_text(page, trial, "rougeL") == ["0.300"]
    # A baseline that is not a scored candidate of this evaluation falls back to the default.
    page = client.get(url, {"baseline": "999999"}).content.decode()
    assert cell_text(page, base, "rougeL") == ["0.200"]


def test_the_scope_target_is_shown_with_pass_or_fail(
    client: Client, project: Project, owner: User
) -> None:
    stage_step_save(
        project=project,
        stage_key=StageKey.SCOPE,
        step_slug="use-case",
        answers={"success_metric": "rouge_l", "metric_target": 0.28, "task_type": "summarization"},
    )
    job, (base, trial, lora) = make_evaluation(project, owner, THREE)
    page = client.get(reverse("evaluation_detail", args=[project.slug, job.id])).content.decode()
    assert "ROUGE-L ≥ 0.28" in page
    for candidate, verdict in ((base, "fail"), (trial, "pass"), (lora, "fail")):
        row = found(rf'data-candidate="{candidate.id}".*?</tr>', page)
        assert f'<span class="badge {verdict}">' in row
    chart = chart_of(page)
    assert chart["target"] == {"key": "rougeL", "value": 0.28, "label": "ROUGE-L"}


def test_unavailable_and_failed_candidates_are_shown_not_crashed_on(
    client: Client, project: Project, owner: User
) -> None:
    job, (_base, _gone, _broken) = make_evaluation(
        project,
        owner,
        [
            THREE[0],
            {
                "label": "LoRA #3",
                "kind": "finetuned",
                "status": CandidateStatus.UNAVAILABLE,
                "reason": "Its weights are gone (/x was deleted).",
            },
            {
                "label": "LoRA #4",
                "kind": "finetuned",
                "status": CandidateStatus.FAILED,
                "reason": "RuntimeError: boom",
            },
        ],
    )
    page = client.get(reverse("evaluation_detail", args=[project.slug, job.id])).content.decode()
    assert page.count('data-testid="unavailable"') == 2
    assert "Unavailable:</strong> Its weights are gone" in page
    assert "Failed:</strong> RuntimeError: boom" in page
    chart = chart_of(page)
    assert chart["candidates"] == ["Base zero-shot"]


def test_the_scorecard_without_any_evaluation_says_how_to_start(
    client: Client, project: Project
) -> None:
    page = client.get(reverse("scorecard", args=[project.slug])).content.decode()
    assert 'data-testid="no-evaluation"' in page


def test_a_running_evaluation_polls_its_fragment_and_stops_when_done(
    client: Client, project: Project, owner: User
) -> None:
    job, _ = make_evaluation(project, owner, THREE[:1], status=JobStatus.RUNNING)
    url = reverse("evaluation_detail", args=[project.slug, job.id])
    full = client.get(url).content.decode()
    assert "<html" in full and 'hx-trigger="every 2s"' in full
    fragment = client.get(url, headers=LIVE_POLL).content.decode()
    assert "<html" not in fragment and fragment.lstrip().startswith('<div id="eval-live"')
    Job.objects.filter(id=job.id).update(status=JobStatus.SUCCEEDED)
    assert "hx-trigger" not in client.get(url, headers=LIVE_POLL).content.decode()


def test_scorecard_queries_do_not_grow_with_candidates(
    client: Client, project: Project, owner: User, django_assert_max_num_queries: Any
) -> None:
    job, _ = make_evaluation(project, owner, THREE)
    url = reverse("evaluation_detail", args=[project.slug, job.id])
    with django_assert_max_num_queries(12):
        client.get(url)
    more, _ = make_evaluation(project, owner, THREE * 2)
    with django_assert_max_num_queries(12):
        client.get(reverse("evaluation_detail", args=[project.slug, more.id]))


# --- Side by side and exports -----------------------------------------------------------


def test_side_by_side_sorts_rows_by_score_difference(
    client: Client, project: Project, owner: User
) -> None:
    job, (base, trial, _) = make_evaluation(project, owner, THREE)
    url = reverse("evaluation_compare", args=[project.slug, job.id])
    page = client.get(
        url, {"a": str(base.id), "b": str(trial.id), "metric": "rougeL"}
    ).content.decode()
    diffs = [float(d) for d in re.findall(r'data-difference="([^"]+)"', page)]
    assert diffs == [0.4, 0.0, -0.1]  # B's biggest win first
    assert "B won 1</strong> rows, <strong>A won 1</strong>" in page
    assert "reference 0" in page and "Trial 2-shot output 0" in page
    page = client.get(
        url, {"a": str(base.id), "b": str(trial.id), "sort": "-diff"}
    ).content.decode()
    assert [float(d) for d in re.findall(r'data-difference="([^"]+)"', page)] == [-0.1, 0.0, 0.4]
    page = client.get(url, {"a": str(base.id), "b": str(trial.id), "sort": "row"}).content.decode()
    assert [float(d) for d in re.findall(r'data-difference="([^"]+)"', page)] == [0.4, -0.1, 0.0]


def test_exports_give_csv_and_json_of_the_scorecard_and_the_rows(
    client: Client, project: Project, owner: User
) -> None:
    job, (_base, _trial, _) = make_evaluation(project, owner, THREE)
    url = reverse("evaluation_export", args=[project.slug, job.id])
    response = client.get(url, {"what": "scorecard", "format": "csv"})
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [r["label"] for r in rows] == ["Base zero-shot", "Trial 2-shot", "LoRA #9"]
    assert rows[1]["rougeL_change"] == "0.1" and rows[1]["rougeL_relative_change"] == "0.5"
    assert rows[2]["general_answer_match_change"] == "-0.1"
    data = json.loads(client.get(url, {"what": "scorecard", "format": "json"}).content)
    assert data["baseline"] == "Base zero-shot" and len(data["scorecard"]) == 3
    data = json.loads(client.get(url, {"what": "examples", "format": "json"}).content)
    assert len(data["examples"]) == 9 and data["examples"][0]["reference"] == "reference 0"
    response = client.get(url, {"what": "examples", "format": "csv"})
    assert len(list(csv.DictReader(io.StringIO(response.content.decode())))) == 9
    assert client.get(url, {"what": "secrets", "format": "csv"}).status_code == 404


# --- Access -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["scorecard", "evaluation_detail", "evaluation_compare", "evaluation_export"]
)
def test_outsiders_get_404_and_posts_are_refused(
    name: str, project: Project, owner: User, outsider: User, client: Client
) -> None:
    job, _ = make_evaluation(project, owner, THREE)
    args = [project.slug] if name == "scorecard" else [project.slug, job.id]
    url = reverse(name, args=args)
    other = Client()
    other.force_login(outsider)
    assert other.get(url).status_code == 404
    assert client.post(url).status_code == 405


def test_a_share_link_shows_the_scorecard_read_only(project: Project, owner: User) -> None:
    job, (base, trial, _) = make_evaluation(project, owner, THREE)
    link = share_link_create(project=project, actor=owner, lifetime=None)
    page = Client().get(reverse("share_scorecard", args=[link.token])).content.decode()
    assert 'data-testid="scorecard"' in page and "Trial 2-shot" in page
    assert "export" not in page.lower().replace("exports muted", "")
    assert f"/s/{link.token}/evaluations/{job.id}/compare/" in page
    compare = Client().get(
        reverse("share_evaluation_compare", args=[link.token, job.id]),
        {"a": str(base.id), "b": str(trial.id)},
    )
    assert compare.status_code == 200 and "/p/" not in compare.content.decode()


# --- Starting an evaluation -------------------------------------------------------------


def test_the_evaluate_step_starts_an_evaluation_through_job_create(
    client: Client,
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    dialogues: Dataset,
    template: PromptTemplate,
    enqueued: list[int],
    tmp_path: Path,
    django_capture_on_commit_callbacks: Any,
) -> None:
    gone = CatalogModel.objects.create(
        slug="tiny-ft-1",
        name="Tiny · LoRA #1",
        source="local",
        location=str(tmp_path / "no-such-adapter"),
        project=project,
        parent=tiny_model,
    )
    url = reverse("wizard_step", args=[project.slug, "adapt", "evaluate"])
    page = client.get(url).content.decode()
    assert "Tiny test model · zero-shot" in page
    assert "Tiny · LoRA #1 — unavailable: Its weights are gone" in page
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            url,
            {
                "dataset": dialogues.id,
                "split": "test",
                "rows": "sample",
                "n_rows": 5,
                "sample_seed": 1,
                "candidates": ["base:tiny", f"model:{gone.id}"],
                "template": template.id,
                "max_new_tokens": 8,
                "decoding": "greedy",
                "seed": 0,
                "general_check": "on",
            },
        )
    job = Job.objects.get(kind=JobKind.EVALUATE)
    assert response.status_code == 302
    assert response["Location"] == reverse("evaluation_detail", args=[project.slug, job.id])
    assert enqueued == [job.id]
    assert job.progress_total == 10 and job.dataset == dialogues
    assert job.params["n_rows"] == 5 and job.params["task"] == "text"
    base, ft = EvaluationCandidate.objects.filter(job=job).order_by("position")
    assert base.kind == "base" and base.base_model == tiny_model
    assert (
        base.spec["template"]["id"] == template.id
        and base.spec["generation"]["max_new_tokens"] == 8
    )
    assert ft.kind == "finetuned" and ft.base_model == gone
    assert Activity.objects.filter(project=project, job=job).exists()


def test_the_evaluate_step_rerenders_with_errors_without_candidates(
    client: Client, project: Project, dialogues: Dataset, template: PromptTemplate
) -> None:
    url = reverse("wizard_step", args=[project.slug, "adapt", "evaluate"])
    response = client.post(
        url,
        {
            "dataset": dialogues.id,
            "split": "test",
            "rows": "all",
            "n_rows": 5,
            "sample_seed": 0,
            "template": template.id,
            "max_new_tokens": 8,
            "decoding": "greedy",
            "seed": 0,
        },
        headers=HTMX,
    )
    assert response.status_code == 200
    assert "Pick at least one candidate." in response.content.decode()
    assert not Job.objects.filter(kind=JobKind.EVALUATE).exists()


def test_viewers_cannot_start_an_evaluation(
    project: Project, teammate: User, dialogues: Dataset
) -> None:
    c = Client()
    c.force_login(teammate)
    url = reverse("wizard_step", args=[project.slug, "adapt", "evaluate"])
    assert c.get(url).status_code == 200
    assert c.post(url, {"dataset": dialogues.id}).status_code == 403


# --- Availability rules -----------------------------------------------------------------


def test_a_candidate_is_unavailable_when_its_job_failed_or_its_weights_are_gone(
    project: Project, owner: User, tiny_model: CatalogModel, tmp_path: Path
) -> None:
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"base_model_name_or_path": "x"}')
    run = JobFactory.create(
        project=project, created_by=owner, kind=JobKind.FINETUNE, status=JobStatus.SUCCEEDED
    )
    model = CatalogModel.objects.create(
        slug="ft",
        name="ft",
        source="local",
        location=str(adapter),
        project=project,
        trained_by_job=run,
    )
    assert evaluating.model_unavailable(model) == ""
    Job.objects.filter(id=run.id).update(status=JobStatus.FAILED)
    run.refresh_from_db()
    model.trained_by_job = run
    assert evaluating.model_unavailable(model) == f"Its fine-tuning job #{run.id} failed."
    Job.objects.filter(id=run.id).update(status=JobStatus.SUCCEEDED)
    run.refresh_from_db()
    model.trained_by_job = run
    shutil.rmtree(adapter)
    assert "weights are gone" in evaluating.model_unavailable(model)
    assert evaluating.model_unavailable(None) == "The model was deleted."
    trial = JobFactory.create(
        project=project, created_by=owner, kind=JobKind.TRIAL, status=JobStatus.FAILED
    )
    candidate = EvaluationCandidate(kind="trial", base_model=tiny_model, source_job=trial)
    assert evaluating.candidate_unavailable(candidate) == f"Its prompt trial #{trial.id} failed."
    assert "deleted" in evaluating.candidate_unavailable(
        EvaluationCandidate(kind="trial", base_model=tiny_model, source_job=None)
    )


def test_the_default_baseline_is_the_zero_shot_base_else_the_first_scored(
    project: Project, owner: User
) -> None:
    _, (base, trial, lora) = make_evaluation(project, owner, THREE)
    assert scorecard.default_baseline([lora, trial, base]) == base
    _, (t2, ft) = make_evaluation(project, owner, [THREE[1], THREE[2]])
    assert scorecard.default_baseline([t2, ft]) == t2
    card = scorecard.build(
        [t2, ft], task="text", scope={"success_metric": "human_rating", "metric_target": 4}
    )
    assert card.notes and card.target is not None and not card.target.measured


def test_a_tie_across_every_candidate_highlights_no_best_value(
    project: Project, owner: User
) -> None:
    same = [{**c, "scores": {"rougeL": 0.2}} for c in THREE[:2]]
    _, candidates = make_evaluation(project, owner, same)
    card = scorecard.build(candidates, task="text")
    assert not any(r.cells["rougeL"].best for r in card.rows)
    assert card.rows[1].cells["rougeL"].delta == 0.0 and card.rows[1].cells["rougeL"].better is None
