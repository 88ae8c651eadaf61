"""Evaluation end to end: the service queues an evaluation on Redis, a real Celery worker
scores a zero-shot base model and a one-shot prompt trial on the same sampled test rows,
marks a fine-tuned candidate whose weights were deleted as unavailable, and a second run
gives the same numbers."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth.models import User

from lifecycle_app.models import (
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
    Stage,
    StageKey,
)
from lifecycle_app.stages.evaluate import candidates as evaluating
from lifecycle_app.stages.evaluate.services import evaluation_create
from lifecycle_app.stages.prompt.building import snapshot
from lifecycle_app.stages.prompt.services import template_create
from tests.factories import JobFactory
from tests.integration.conftest import WorkerProcess, wait_for_job
from tests.integration.sample_data import sample_dialogues
from workers.ml.params import EvaluateParams, GenerationSettings, TrialParams

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ROWS = 4


@pytest.fixture
def dialogues(
    shared_storage: Path, project: Project, owner: User, tmp_path: Path, tiny_folder: Path
) -> Dataset:
    return sample_dialogues(project, owner, tmp_path / "uploads", fractions=(0.7, 0.1, 0.2))


@pytest.fixture
def template(project: Project, owner: User) -> PromptTemplate:
    return template_create(
        project=project,
        user=owner,
        name="Summarize",
        fields={
            "instruction": "Summarize the dialogue in one sentence.",
            "example_format": "Dialogue: {input}\nSummary: {target}",
            "body": "{instruction}\n\n{examples}Dialogue: {input}\nSummary:",
            "use_chat_template": True,
        },
    )


def start(
    project: Project, owner: User, dataset: Dataset, keys: list[str], template: PromptTemplate
) -> Job:
    generation = GenerationSettings(max_new_tokens=6)
    resolved = [
        evaluating.resolve_candidate(
            project=project, key=k, template=template, generation=generation
        )
        for k in keys
    ]
    params = EvaluateParams(
        dataset_id=dataset.id,
        split="test",
        n_rows=ROWS,
        sample_seed=3,
        candidates=[spec for spec, _, _ in resolved],
    )
    return evaluation_create(
        project=project,
        user=owner,
        dataset=dataset,
        params=params,
        sources=[(model, source) for _, model, source in resolved],
        rows=ROWS,
    )


def test_an_evaluation_scores_candidates_marks_a_deleted_one_unavailable_and_repeats(
    live_worker: WorkerProcess,
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    dialogues: Dataset,
    template: PromptTemplate,
    tmp_path: Path,
) -> None:
    trial = JobFactory.create(
        project=project,
        created_by=owner,
        kind=JobKind.TRIAL,
        status=JobStatus.SUCCEEDED,
        base_model=tiny_model,
        dataset=dialogues,
        prompt_template=template,
        params=TrialParams(
            model_ref="tiny",
            dataset_id=dialogues.id,
            shots=1,
            max_new_tokens=6,
            template=snapshot(template),
        ).model_dump(),
    )
    gone = CatalogModel.objects.create(
        slug="tiny-ft-gone",
        name="Tiny · LoRA (deleted)",
        source="local",
        location=str(tmp_path / "deleted-adapter"),
        project=project,
        parent=tiny_model,
        weights_present=True,
    )
    keys = ["base:tiny", f"trial:{trial.id}", f"model:{gone.id}"]

    first = start(project, owner, dialogues, keys, template)
    wait_for_job(first.id, timeout=120)
    first.refresh_from_db()
    assert first.status == JobStatus.SUCCEEDED, first.error
    assert first.progress_done == first.progress_total == ROWS * 3
    base, shot, ft = EvaluationCandidate.objects.filter(job=first).order_by("position")
    assert base.status == shot.status == CandidateStatus.DONE
    assert ft.status == CandidateStatus.UNAVAILABLE and "deleted" in ft.reason
    assert {"rouge1", "rougeLsum", "bleu", "exact_match", "perplexity"} <= set(base.scores)
    assert set(base.general_scores) == {
        "mc_accuracy",
        "mc_accuracy_raw",
        "mc_questions",
        "answer_match",
        "rougeL",
        "perplexity",
    }
    # The trial runs the same weights: it shares the base model's general-ability figures.
    assert shot.general_scores == base.general_scores
    examples = EvaluationExample.objects.filter(candidate=base)
    assert examples.count() == ROWS and all(e.status == "done" for e in examples)
    assert {e.line for e in examples} == {
        e.line for e in EvaluationExample.objects.filter(candidate=shot)
    }  # the same rows for every candidate
    assert "perplexity" in examples[0].scores
    stage = Stage.objects.get(project=project, key=StageKey.ADAPT)
    assert stage.step("evaluate")["answers"]["succeeded_evaluation"] == first.id

    second = start(project, owner, dialogues, keys, template)
    wait_for_job(second.id, timeout=120)
    again = EvaluationCandidate.objects.filter(job=second).order_by("position")
    assert [c.scores for c in again] == [base.scores, shot.scores, {}]
    assert [c.general_scores for c in again[:2]] == [base.general_scores, shot.general_scores]


def test_a_lora_candidate_from_a_fine_tuning_job_is_scored_with_its_own_general_check(
    live_worker: WorkerProcess,
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    dialogues: Dataset,
    template: PromptTemplate,
) -> None:
    from lifecycle_app.stages.finetune.services import finetune_create
    from workers.ml.params import TrainParams

    params = TrainParams(
        model_ref="tiny",
        dataset_id=dialogues.id,
        max_steps=2,
        batch_size=2,
        max_seq_len=1024,
        eval_every=0,
        checkpoint_every=0,
        eval_rows=2,
        template=snapshot(template),
    )
    run = finetune_create(
        project=project,
        user=owner,
        base_model=tiny_model,
        dataset=dialogues,
        params=params,
        total_steps=2,
    )
    wait_for_job(run.id, timeout=120)
    run.refresh_from_db()
    assert run.status == JobStatus.SUCCEEDED, run.error
    lora = CatalogModel.objects.get(trained_by_job=run)

    job = start(project, owner, dialogues, ["base:tiny", f"model:{lora.id}"], template)
    wait_for_job(job.id, timeout=120)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.error
    base, tuned = EvaluationCandidate.objects.filter(job=job).order_by("position")
    assert tuned.status == CandidateStatus.DONE, tuned.reason
    assert tuned.kind == "finetuned" and tuned.spec["template"]["id"] == template.id
    assert set(tuned.general_scores) == {
        "mc_accuracy",
        "mc_accuracy_raw",
        "mc_questions",
        "answer_match",
        "rougeL",
        "perplexity",
    }
    # Other weights, so their own general-ability run: the LoRA perplexity differs.
    assert tuned.general_scores["perplexity"] != base.general_scores["perplexity"]


def test_a_trials_outputs_are_reused_and_a_repeated_candidate_runs_once(
    live_worker: WorkerProcess,
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    dialogues: Dataset,
    template: PromptTemplate,
) -> None:
    """Issue 19: a zero-shot trial that answered the evaluation's rows with the very same
    prompts is not generated again (its outputs show up as they were), and the catalog
    model zero-shot with the same template and settings is that same candidate: run once."""
    from lifecycle_app.models import TrialExample

    generation = GenerationSettings(max_new_tokens=6)
    trial = JobFactory.create(
        project=project,
        created_by=owner,
        kind=JobKind.TRIAL,
        status=JobStatus.SUCCEEDED,
        base_model=tiny_model,
        dataset=dialogues,
        prompt_template=template,
        params=TrialParams(
            model_ref="tiny",
            dataset_id=dialogues.id,
            split="test",
            n_rows=50,
            template=snapshot(template),
            **generation.model_dump(),
        ).model_dump(),
    )
    spec, model, _ = evaluating.resolve_candidate(
        project=project, key=f"trial:{trial.id}", template=template, generation=generation
    )
    assert model is not None
    eval_params = EvaluateParams(
        dataset_id=dialogues.id, split="test", n_rows=ROWS, sample_seed=3, candidates=[spec]
    )
    rows = evaluating.eval_rows(dialogues, eval_params)
    prompts = evaluating.build_candidate_prompts(
        model=model, dataset=dialogues, spec=spec, rows=rows, split="test"
    )
    # What the trial wrote for these rows (a marker no model would generate).
    TrialExample.objects.bulk_create(
        TrialExample(
            job=trial,
            index=i,
            line=p.line,
            input=p.input,
            prompt=p.text,
            reference=p.reference,
            output=f"trial answer {p.line}",
            status="done",
            output_tokens=3,
        )
        for i, p in enumerate(prompts)
    )

    job = start(project, owner, dialogues, [f"trial:{trial.id}", "base:tiny"], template)
    wait_for_job(job.id, timeout=120)
    job.refresh_from_db()

    assert job.status == JobStatus.SUCCEEDED, job.error
    reused, twin = EvaluationCandidate.objects.filter(job=job).order_by("position")
    assert reused.status == twin.status == CandidateStatus.DONE
    assert reused.stats["reused_from_trial"] == trial.id
    outputs = {e.line: e.output for e in EvaluationExample.objects.filter(candidate=reused)}
    assert outputs == {p.line: f"trial answer {p.line}" for p in prompts}
    assert "perplexity" in reused.scores and reused.general_scores
    assert twin.stats["same_as"] == reused.id
    assert twin.scores == reused.scores and twin.general_scores == reused.general_scores
    assert job.progress_done == job.progress_total == ROWS * 2
