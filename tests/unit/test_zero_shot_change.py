"""Each trial's change against the project's zero-shot trial of the same model on the same
rows (issue 19): in the trials table, on the project page's best-trial card, and in the
evaluation scorecard for few-shot trial candidates."""

from __future__ import annotations

from typing import cast

from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from lifecycle_app.catalog.models import CatalogModel
from lifecycle_app.datasets.models import Dataset
from lifecycle_app.jobs.models import Job, JobKind, JobStatus
from lifecycle_app.projects.models import Project
from lifecycle_app.stages.prompt.baseline import annotate_zero_shot_change, points
from lifecycle_app.stages.prompt.building import snapshot
from lifecycle_app.stages.prompt.models import PromptTemplate
from lifecycle_app.stages.prompt.services import trial_mark_best
from tests.factories import CatalogModelFactory
from workers.ml.params import TrialParams

from .test_views_trials import client_for, dialogues, storage, template  # noqa: F401


def trial(
    project: Project,
    model: CatalogModel,
    dataset: Dataset,
    version: PromptTemplate,
    *,
    shots: int,
    rouge1: float,
    n_rows: int = 10,
    split: str = "validation",
    status: str = JobStatus.SUCCEEDED,
) -> Job:
    params = TrialParams(
        model_ref=model.slug,
        dataset_id=dataset.id,
        split=split,  # type: ignore[arg-type]
        n_rows=n_rows,
        shots=shots,
        template=snapshot(version),
    )
    return Job.objects.create(
        project=project,
        kind=JobKind.TRIAL,
        status=status,
        base_model=model,
        dataset=dataset,
        prompt_template=version,
        params=params.model_dump(),
        progress_total=n_rows,
        progress_done=n_rows,
        result={"scores": {"rouge1": rouge1, "rougeL": rouge1 / 2}, "rows_done": n_rows},
    )


def test_points_are_signed_with_a_true_minus() -> None:
    assert points(0.058) == "+5.8"
    assert points(-0.03) == "\u22123.0"
    assert points(0.0001) == "±0.0"


def test_a_few_shot_trial_is_compared_with_the_zero_shot_trial_on_the_same_rows_and_model(
    project: Project,
    tiny_model: CatalogModel,
    dialogues: Dataset,  # noqa: F811
    template: PromptTemplate,  # noqa: F811
) -> None:
    zero = trial(project, tiny_model, dialogues, template, shots=0, rouge1=0.173)
    three = trial(project, tiny_model, dialogues, template, shots=3, rouge1=0.231)
    worse = trial(project, tiny_model, dialogues, template, shots=1, rouge1=0.143)
    other_rows = trial(project, tiny_model, dialogues, template, shots=3, rouge1=0.3, n_rows=20)
    other_split = trial(project, tiny_model, dialogues, template, shots=3, rouge1=0.3, split="test")
    trial(project, tiny_model, dialogues, template, shots=0, rouge1=0.9, status=JobStatus.FAILED)

    jobs = [zero, three, worse, other_rows, other_split]
    annotate_zero_shot_change(project_id=project.id, trials=jobs)

    assert zero.zero_shot_baseline and zero.vs_zero is None  # type: ignore[attr-defined]
    assert three.vs_zero.baseline_id == zero.id  # type: ignore[attr-defined]
    assert three.vs_zero.text == "+5.8 ROUGE-1"  # type: ignore[attr-defined]
    assert three.vs_zero.verdict == "helped"  # type: ignore[attr-defined]
    assert worse.vs_zero.text == "\u22123.0 ROUGE-1"  # type: ignore[attr-defined]
    assert worse.vs_zero.verdict == "hurt"  # type: ignore[attr-defined]
    assert other_rows.vs_zero is None  # type: ignore[attr-defined]
    assert other_split.vs_zero is None  # type: ignore[attr-defined]


def test_another_models_zero_shot_trial_is_not_a_baseline(
    project: Project,
    tiny_model: CatalogModel,
    dialogues: Dataset,  # noqa: F811
    template: PromptTemplate,  # noqa: F811
) -> None:
    other = cast(CatalogModel, CatalogModelFactory(slug="other", name="Other"))
    trial(project, other, dialogues, template, shots=0, rouge1=0.1)
    few = trial(project, tiny_model, dialogues, template, shots=3, rouge1=0.3)

    annotate_zero_shot_change(project_id=project.id, trials=[few])

    assert few.vs_zero is None  # type: ignore[attr-defined]


def test_the_trials_table_and_the_best_trial_card_show_the_change(
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    dialogues: Dataset,  # noqa: F811
    template: PromptTemplate,  # noqa: F811
) -> None:
    trial(project, tiny_model, dialogues, template, shots=0, rouge1=0.173)
    three = trial(project, tiny_model, dialogues, template, shots=3, rouge1=0.231)
    trial_mark_best(project=project, job=three, user=owner)
    client: Client = client_for(owner)

    table = client.get(reverse("trial_list", args=[project.slug])).content.decode()
    page = client.get(reverse("project_detail", args=[project.slug])).content.decode()

    assert "+5.8 ROUGE-1" in table
    assert "zero-shot</small>" in table
    assert 'data-testid="speed-definitions"' in table
    assert "+5.8 ROUGE-1" in page and "(helped)" in page


def test_the_scorecard_gives_a_few_shot_trial_its_change_against_zero_shot_of_its_model() -> None:
    from lifecycle_app.stages.evaluate import scorecard
    from lifecycle_app.stages.evaluate.models import CandidateStatus, EvaluationCandidate

    def candidate(i: int, kind: str, model: int, shots: int, rouge1: float) -> EvaluationCandidate:
        return EvaluationCandidate(
            id=i,
            position=i,
            label=f"c{i}",
            kind=kind,
            base_model_id=model,
            spec={"shots": shots, "template": {"name": "T", "version": 1}},
            status=CandidateStatus.DONE,
            scores={"rouge1": rouge1, "rougeL": rouge1 / 2},
        )

    card = scorecard.build(
        [
            candidate(1, "base", 7, 0, 0.173),
            candidate(2, "trial", 7, 3, 0.231),
            candidate(3, "trial", 8, 3, 0.5),  # another model: no zero-shot of its own here
            candidate(4, "finetuned", 7, 0, 0.4),
        ],
        task="text",
    )

    notes = {r.candidate.id: r.vs_zero for r in card.rows}
    assert notes == {1: "", 2: "+5.8 ROUGE-1 vs zero-shot", 3: "", 4: ""}
