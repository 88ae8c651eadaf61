"""Evaluation on the web side: which candidates a project can evaluate, whether each is
still available, and the prompts a candidate runs (shared by the form and the worker).

A candidate is a model plus the prompt it is asked with. Three kinds exist today:
"base" (a catalog model, zero-shot, with the chosen template), "trial" (a prompt trial's
model, template version, shots and generation settings) and "finetuned" (a project's
fine-tuned model, zero-shot, with the template it was trained on). Later stages add kinds
by building a `CandidateSpec`; the worker needs nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lifecycle_app.catalog.models import CatalogModel
from lifecycle_app.common.labels import versioned_name
from lifecycle_app.datasets.models import Dataset
from lifecycle_app.jobs.models import Job, JobKind, JobStatus
from lifecycle_app.projects.models import Project
from lifecycle_app.stages.evaluate.models import EvaluationCandidate
from lifecycle_app.stages.prompt import building as prompting
from lifecycle_app.stages.prompt.models import PromptTemplate
from lifecycle_app.stages.prompt.selectors import trial_label
from workers.ml import prompts as ml_prompts
from workers.ml.evaluation.runner import sample_indices
from workers.ml.loading import adapter_base
from workers.ml.params import CandidateSpec, EvaluateParams, GenerationSettings, TrialParams

MAX_TRIAL_OPTIONS = 20


@dataclass(frozen=True)
class CandidateOption:
    key: str  # "base:<slug>" | "trial:<job id>" | "model:<model id>"
    label: str
    kind: str
    unavailable: str = ""  # why it cannot run, when it cannot


def model_unavailable(model: CatalogModel | None) -> str:
    """Why a model cannot be evaluated ("" when it can): deleted, its fine-tuning job not
    succeeded, or its weights folder gone."""
    if model is None:
        return "The model was deleted."
    job = model.trained_by_job
    if model.project_id is not None and job is not None and job.status != JobStatus.SUCCEEDED:
        return f"Its fine-tuning job #{job.id} {job.get_status_display().lower()}."
    # A store key is not looked up here: pages never call the store (a job whose model is
    # gone from it fails with the store's message).
    if model.source == "local" and Path(model.location).is_absolute():
        folder = Path(model.location).expanduser()
        if not ((folder / "config.json").is_file() or adapter_base(folder)):
            return f"Its weights are gone ({folder} was deleted)."
    return ""


def candidate_unavailable(candidate: EvaluationCandidate) -> str:
    """Why a stored candidate cannot run now ("" when it can)."""
    reason = model_unavailable(candidate.base_model)
    if reason:
        return reason
    source = candidate.source_job
    if candidate.kind == "trial":
        if source is None:
            return "Its prompt trial was deleted."
        if source.status != JobStatus.SUCCEEDED:
            return f"Its prompt trial #{source.id} {source.get_status_display().lower()}."
    return ""


def _template_for_model(
    model: CatalogModel, fallback: PromptTemplate | None
) -> dict[str, Any] | None:
    job = model.trained_by_job
    snap = (job.params or {}).get("template") if job is not None else None
    if snap and {"id", "body"} <= set(snap):
        return dict(snap)
    return prompting.snapshot(fallback).model_dump() if fallback is not None else None


def candidate_options(*, project: Project) -> list[CandidateOption]:
    """Everything the project can evaluate: catalog models zero-shot, its succeeded prompt
    trials, its fine-tuned models (with the reason when one is unavailable)."""
    options = [
        CandidateOption(f"base:{m.slug}", f"{m.name} · zero-shot", "base")
        for m in CatalogModel.objects.catalog().pickable().filter(weights_present=True)
    ]
    trials = (
        Job.objects.filter(project=project, kind=JobKind.TRIAL, status=JobStatus.SUCCEEDED)
        .select_related("base_model", "prompt_template")
        .order_by("-created_at", "-id")[:MAX_TRIAL_OPTIONS]
    )
    for t in trials:
        options.append(CandidateOption(f"trial:{t.id}", trial_label(t, with_scores=True), "trial"))
    for m in CatalogModel.objects.filter(project=project).select_related("trained_by_job"):
        options.append(
            CandidateOption(f"model:{m.id}", f"{m.name}", "finetuned", model_unavailable(m))
        )
    return options


class CandidateError(ValueError):
    pass


def resolve_candidate(
    *,
    project: Project,
    key: str,
    template: PromptTemplate | None,
    generation: GenerationSettings,
) -> tuple[CandidateSpec, CatalogModel | None, Job | None]:
    """The spec of one option key, with the model and source job it points at.

    `template` is the zero-shot template for "base" candidates (and fine-tuned ones that
    do not record theirs); `generation` their settings. A trial keeps its own settings.
    """
    kind, _, ref = key.partition(":")
    if kind == "base":
        model = CatalogModel.objects.catalog().filter(slug=ref).first()
        if model is None or template is None:
            raise CandidateError("Pick a model from the catalog and a prompt template.")
        spec = CandidateSpec(
            label=f"{model.name} · zero-shot",
            kind="base",
            model_ref=model.slug,
            template=prompting.snapshot(template),
            generation=generation,
        )
        return spec, model, None
    if kind == "trial" and ref.isdigit():
        job = (
            Job.objects.filter(project=project, kind=JobKind.TRIAL, id=int(ref))
            .select_related("base_model", "prompt_template")
            .first()
        )
        if job is None:
            raise CandidateError("That prompt trial is not in this project.")
        params = TrialParams(**job.params)
        spec = CandidateSpec(
            label=f"Trial #{job.id} · {versioned_name(params.template.name, params.template.version)} · "
            f"{params.shots}-shot",
            kind="trial",
            model_ref=params.model_ref,
            template=params.template,
            shots=params.shots,
            shot_mode=params.shot_mode,
            shot_seed=params.shot_seed,
            shot_lines=params.shot_lines,
            generation=params.generation_settings(),
            source_job_id=job.id,
        )
        return spec, job.base_model, job
    if kind == "model" and ref.isdigit():
        model = (
            CatalogModel.objects.filter(project=project, id=int(ref))
            .select_related("trained_by_job")
            .first()
        )
        if model is None:
            raise CandidateError("That model is not one of this project's.")
        snap = _template_for_model(model, template)
        if snap is None:
            raise CandidateError("Pick a prompt template.")
        trained_by = model.trained_by_job.kind if model.trained_by_job else ""
        spec = CandidateSpec(
            label=model.name,
            kind={"align": "aligned", "export": "exported"}.get(trained_by, "finetuned"),
            model_ref=model.slug,
            template=snap,  # type: ignore[arg-type]
            generation=generation,
            source_job_id=model.trained_by_job_id,
        )
        return spec, model, model.trained_by_job
    raise CandidateError(f"Unknown candidate {key!r}.")


def eval_rows(dataset: Dataset, params: EvaluateParams) -> list[dict[str, Any]]:
    """The rows every candidate runs: the split, all or a seeded sample, in file order."""
    rows = prompting.split_rows(dataset, params.split)
    if not rows:
        raise prompting.PromptingError(
            f"The {params.split} split of '{dataset.name}' has no rows; pick the other split."
        )
    return [rows[i] for i in sample_indices(len(rows), params.n_rows, params.sample_seed)]


def build_candidate_prompts(
    *,
    model: CatalogModel,
    dataset: Dataset,
    spec: CandidateSpec,
    rows: list[dict[str, Any]],
    split: str,
) -> list[ml_prompts.BuiltPrompt]:
    """The exact prompts of one candidate: its template and shots (picked from the
    dataset's train split as its trial picked them), long inputs truncated to fit so
    every candidate answers every row."""
    kit = prompting.kit_for(model)
    trial_like = TrialParams(
        model_ref=spec.model_ref,
        dataset_id=dataset.id,
        split=split,  # type: ignore[arg-type]
        shots=spec.shots,
        shot_mode=spec.shot_mode,
        shot_seed=spec.shot_seed,
        shot_lines=spec.shot_lines,
        template=spec.template,
        **spec.generation.model_dump(),
    )
    try:
        row_shots = prompting.shots_for(dataset, trial_like, rows)
    except prompting.PromptingError:
        if spec.shot_mode != "manual":
            raise
        # The trial's hand-picked rows belong to another dataset: take the first ones.
        row_shots = prompting.shots_for(
            dataset, trial_like.model_copy(update={"shot_mode": "first", "shot_lines": []}), rows
        )
    built, _ = ml_prompts.build_prompts(
        kit,
        prompting.spec_of(spec.template),
        rows,
        max_new_tokens=spec.generation.max_new_tokens,
        overflow="truncate",
        row_shots=row_shots,
    )
    return built
