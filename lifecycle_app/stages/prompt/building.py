"""Builds a trial's prompts from database rows, for the web preview/check and the worker.

Both sides call `build_for_trial`, so the preview, the context-window check and the trial
run see the same rows, shots and text. Tokenizing goes through `workers.ml.prompts`
(the `tokenizers` package and a jinja chat template: no torch in the web process).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

from lifecycle_app.catalog.models import CatalogModel
from lifecycle_app.datasets.files import clean_file
from lifecycle_app.datasets.models import Dataset
from lifecycle_app.stages.prompt.models import PromptTemplate
from lifecycle_app.storage import StoreError, StoreMissing, local_dir
from workers.ml import prompts as ml_prompts
from workers.ml.data.validation import read_clean
from workers.ml.loading import ModelSpec, prepared_path
from workers.ml.params import TemplateSnapshot, TrialParams


class PromptingError(Exception):
    """Something the person can fix (the message says what)."""


def snapshot(template: PromptTemplate) -> TemplateSnapshot:
    return TemplateSnapshot(
        id=template.id,
        name=template.name,
        version=template.version,
        instruction=template.instruction,
        example_format=template.example_format,
        body=template.body,
        use_chat_template=template.use_chat_template,
        shot_style=template.shot_style,  # type: ignore[arg-type]
    )


def spec_of(template: PromptTemplate | TemplateSnapshot) -> ml_prompts.TemplateSpec:
    return ml_prompts.TemplateSpec(
        instruction=template.instruction,
        example_format=template.example_format,
        body=template.body,
        use_chat_template=template.use_chat_template,
        shot_style=template.shot_style,  # type: ignore[arg-type]
    )


def kit_for(base_model: CatalogModel) -> ml_prompts.PromptKit:
    spec = ModelSpec(source=base_model.source, location=base_model.location)  # type: ignore[arg-type]
    if spec.source == "local" and not os.path.isabs(spec.location):
        try:  # a store key: the tokenizer files come through this host's cache
            spec = ModelSpec(source="local", location=str(local_dir(spec.location)))
        except StoreError as exc:
            raise PromptingError(str(exc)) from exc
    folder = prepared_path(spec, Path(settings.MODELS_DIR))
    if folder is None:
        raise PromptingError(
            f"{base_model.name} is not prepared on this machine yet; run "
            "`python manage.py prepare_models` (the bundled model converts once, ~30 s)."
        )
    try:
        return ml_prompts.load_kit(folder, base_model.context_length or 0)
    except ml_prompts.KitUnavailable as exc:
        raise PromptingError(str(exc)) from exc


def split_rows(dataset: Dataset, split: str, limit: int | None = None) -> list[dict[str, Any]]:
    """The split's rows in file order (the first `limit` of them)."""
    try:
        path = clean_file(dataset)
    except StoreMissing as exc:
        raise PromptingError(
            f"The file of dataset '{dataset.name}' is missing; upload it again."
        ) from exc
    rows: list[dict[str, Any]] = []
    for row in read_clean(path, split):
        rows.append(row)
        if limit is not None and len(rows) >= limit:
            break
    return rows


def shots_for(
    dataset: Dataset, params: TrialParams, rows: list[dict[str, Any]]
) -> list[list[dict[str, Any]]]:
    """Each row's shots from the train split (the same for every row, or per row when
    they are chosen by similarity)."""
    if params.shots == 0:
        return [[] for _ in rows]
    train = split_rows(dataset, "train")
    try:
        return ml_prompts.shots_per_row(
            train,
            rows,
            params.shots,
            mode=params.shot_mode,
            seed=params.shot_seed,
            lines=params.shot_lines,
        )
    except ValueError as exc:
        raise PromptingError(str(exc)) from exc


@dataclass
class BuiltTrial:
    prompts: list[ml_prompts.BuiltPrompt]
    report: ml_prompts.OverflowReport
    row_shots: list[list[dict[str, Any]]]
    kit: ml_prompts.PromptKit

    @property
    def rows(self) -> int:
        return len(self.prompts)

    @property
    def shots(self) -> list[dict[str, Any]]:
        """The first row's shots (every row's, unless they are chosen per row)."""
        return self.row_shots[0] if self.row_shots else []


def build_for_trial(
    *, base_model: CatalogModel, dataset: Dataset, params: TrialParams
) -> BuiltTrial:
    kit = kit_for(base_model)
    rows = split_rows(dataset, params.split, params.n_rows)
    if not rows:
        raise PromptingError(
            f"The {params.split} split of '{dataset.name}' has no rows; pick the other split."
        )
    row_shots = shots_for(dataset, params, rows)
    built, report = ml_prompts.build_prompts(
        kit,
        spec_of(params.template),
        rows,
        max_new_tokens=params.max_new_tokens,
        overflow=params.overflow,
        row_shots=row_shots,
    )
    return BuiltTrial(built, report, row_shots, kit)


PLAIN_MODEL_NOTE = (
    "{model} has no chat template: it is a plain model that continues text rather than "
    "answering turns of a conversation, so the suggested template writes its shots inline, "
    "one after another inside the prompt, and the row last for the model to continue."
)


def has_chat_template(model: CatalogModel | None) -> bool | None:
    """Whether `model` has a chat template (None when that cannot be read here)."""
    if model is None:
        return None
    try:
        return kit_for(model).has_chat_template
    except PromptingError:
        return None


def suggested_template(
    *, task_type: str, dataset: Dataset | None, chat_model: bool = True
) -> dict[str, Any]:
    """Starting values for a new template, from the Scope task type and the dataset.

    For a chat model shots go in as earlier chat turns (what chat models are trained on);
    for a plain model (`chat_model` False) they are written inline."""
    suggested = _suggested_text(task_type=task_type, dataset=dataset)
    suggested["use_chat_template"] = chat_model
    suggested["shot_style"] = "chat" if chat_model else "inline"
    return suggested


def template_suggestion(
    *, project: Any, model_slug: str | None, task_type: str, dataset: Dataset | None
) -> tuple[dict[str, Any], str]:
    """The suggested template for the project's chosen model, and (for a plain model)
    the sentence saying why its shots are written inline."""
    model = (
        CatalogModel.objects.for_project(project).filter(slug=model_slug).first()
        if model_slug
        else None
    )
    chat_model = has_chat_template(model)
    initial = suggested_template(
        task_type=task_type, dataset=dataset, chat_model=chat_model is not False
    )
    note = PLAIN_MODEL_NOTE.format(model=model.name) if chat_model is False and model else ""
    return initial, note


def _suggested_text(*, task_type: str, dataset: Dataset | None) -> dict[str, Any]:
    if (dataset is not None and dataset.classification) or task_type == "classification":
        labels = sorted((dataset.labels or {}).keys()) if dataset is not None else []
        choices = f" Answer with one of: {', '.join(labels)}." if labels else ""
        return {
            "name": "Classify",
            "instruction": f"Classify the message into the right category.{choices} "
            "Answer with the category only.",
            "example_format": "Message: {input}\nCategory: {target}",
            "body": "{instruction}\n\n{examples}Message: {input}\nCategory:",
        }
    if task_type in ("summarization", ""):
        d = ml_prompts.DEFAULT_TEMPLATE
        return {
            "name": "Summarize",
            "instruction": d.instruction,
            "example_format": d.example_format,
            "body": d.body,
        }
    return {
        "name": "Answer",
        "instruction": "Answer the input as in the examples.",
        "example_format": "Input: {input}\nOutput: {target}",
        "body": "{instruction}\n\n{examples}Input: {input}\nOutput:",
    }
