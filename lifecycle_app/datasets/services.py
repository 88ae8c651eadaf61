"""Dataset writes: stage an upload, validate it, save it with its split, rename, delete.

Design note. An upload is first *staged*: the streamed file is moved under
DATASETS_DIR/staged/ with a random token and a small JSON sidecar naming its project and
detected format. No database row exists yet, so a file the user abandons or that is
rejected leaves no record; a rejected file is deleted at once, abandoned ones by the
periodic clean-up. Saving validates again, writes the cleaned and split JSON Lines copy,
and only then creates the Dataset row (and its profile job) in one transaction.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import secrets
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.http import Http404

from lifecycle_app.catalog.models import CatalogModel
from lifecycle_app.datasets.files import dataset_files_delete, dataset_files_publish
from lifecycle_app.datasets.models import Dataset
from lifecycle_app.datasets.profiling import job_create_profile
from lifecycle_app.jobs.services import job_limits_check
from lifecycle_app.projects.activity import activity_record
from lifecycle_app.projects.models import ActivityVerb, Project
from lifecycle_app.storage import StoreError
from workers.ml.data import validation as dataset_io
from workers.ml.data.records import DatasetRejected
from workers.ml.data.splits import SPLIT_COLUMN, combine_split_files
from workers.ml.data.validation import Inspection, ValidationReport

logger = logging.getLogger(__name__)

STAGED_MAX_AGE_S = 24 * 3600
PASTED_FILENAME = "pasted.txt"
FILENAME_MAX_CHARS = 200  # Dataset.original_filename holds 255


@dataclass
class StagedUpload:
    token: str
    project_id: int
    user_id: int
    filename: str
    name: str
    size_bytes: int
    created: float
    inspection: dict[str, Any]
    licence: str = ""
    # One file per split, combined into one file with a SPLIT_COLUMN: split -> file name.
    split_files: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return _staged_dir() / f"{self.token}.data"

    @property
    def format(self) -> str:
        return str(self.inspection["format"])

    @property
    def encoding(self) -> str:
        return str(self.inspection["encoding"])


@dataclass(frozen=True)
class Mapping:
    input_field: str
    target_field: str
    classification: bool
    seed: int
    fractions: tuple[float, float, float]
    split_field: str = ""  # a column naming each row's split; "" splits at random


def _staged_dir() -> Path:
    folder = Path(settings.DATASETS_DIR) / "staged"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def dataset_stage_file(
    *,
    project: Project,
    user: User,
    path: Path,
    filename: str,
    name: str = "",
    licence: str = "",
    split_files: dict[str, str] | None = None,
) -> StagedUpload:
    """Inspect a streamed upload at `path` and stage it; the file is moved or deleted.

    Raises DatasetRejected (after deleting the file) when the file cannot be used.
    """
    token = secrets.token_urlsafe(18)
    target = _staged_dir() / f"{token}.data"
    try:
        inspection: Inspection = dataset_io.inspect(
            path, filename=filename, max_rows=settings.DATASET_MAX_ROWS
        )
        shutil.move(str(path), target)
    except BaseException:
        _remove(path)
        raise
    staged = StagedUpload(
        token=token,
        project_id=project.id,
        user_id=user.id,
        filename=short_filename(Path(filename).name) or PASTED_FILENAME,
        name=(name or Path(filename).stem or "Pasted rows")[:120],
        size_bytes=target.stat().st_size,
        created=time.time(),
        inspection=asdict(inspection),
        licence=licence.strip()[:200],
        split_files=split_files or {},
    )
    (_staged_dir() / f"{token}.json").write_text(json.dumps(asdict(staged)))
    return staged


def dataset_stage_split_files(
    *,
    project: Project,
    user: User,
    parts: list[tuple[str, Path, str]],
    name: str = "",
    licence: str = "",
) -> StagedUpload:
    """Stage one file per split (split, path, file name) as one upload: each file is
    inspected, then their records are written to one JSON Lines file whose SPLIT_COLUMN
    names each row's split. The files are deleted either way.

    Raises DatasetRejected, naming the file, when one of them cannot be used.
    """
    combined = Path(settings.FILE_UPLOAD_TEMP_DIR) / f"splits-{secrets.token_hex(8)}.jsonl"
    try:
        readable: list[tuple[str, Path, str]] = []
        for split, path, filename in parts:
            try:
                inspection = dataset_io.inspect(
                    path, filename=filename, max_rows=settings.DATASET_MAX_ROWS
                )
            except DatasetRejected as exc:
                raise DatasetRejected(
                    f"The {split} file ({filename}): {exc}", exc.problems
                ) from None
            readable.append((split, path, inspection.format))
        combine_split_files(readable, combined, max_rows=settings.DATASET_MAX_ROWS)
    except BaseException:
        _remove(combined)
        raise
    finally:
        for _, path, _ in parts:
            _remove(path)
    train_name = next((f for s, _, f in parts if s == "train"), parts[0][2])
    return dataset_stage_file(
        project=project,
        user=user,
        path=combined,
        filename=f"{Path(train_name).stem} (+{len(parts) - 1} split files).jsonl",
        name=name or Path(train_name).stem,
        licence=licence,
        split_files={split: short_filename(Path(f).name) for split, _, f in parts},
    )


def short_filename(name: str, limit: int = FILENAME_MAX_CHARS) -> str:
    """`name` cut to `limit` characters by shortening its stem: the extension stays, so the
    download opens in the same program as the upload."""
    if len(name) <= limit:
        return name
    suffix = Path(name).suffix
    if not suffix or len(suffix) > 16:  # no extension, or a dot inside a long name
        return name[:limit]
    return name[: -len(suffix)][: limit - len(suffix)] + suffix


def dataset_stage_text(
    *, project: Project, user: User, text: str, name: str = "", licence: str = ""
) -> StagedUpload:
    tmp = Path(settings.FILE_UPLOAD_TEMP_DIR) / f"paste-{secrets.token_hex(8)}.txt"
    tmp.write_text(text, encoding="utf-8")
    return dataset_stage_file(
        project=project,
        user=user,
        path=tmp,
        filename=PASTED_FILENAME,
        name=name or "Pasted rows",
        licence=licence,
    )


def staged_get(*, project: Project, token: str) -> StagedUpload:
    """The staged upload `token` of this project, or 404 (tokens of other projects too)."""
    if not token.replace("-", "").replace("_", "").isalnum() or len(token) > 64:
        raise Http404("No such upload.")
    meta = _staged_dir() / f"{token}.json"
    try:
        data = json.loads(meta.read_text())
    except (FileNotFoundError, ValueError):
        raise Http404("This upload has expired or was already saved.") from None
    staged = StagedUpload(**data)
    if staged.project_id != project.id or not staged.path.exists():
        raise Http404("No such upload.")
    return staged


def staged_discard(*, staged: StagedUpload) -> None:
    _remove(staged.path)
    _remove(_staged_dir() / f"{staged.token}.json")


def staged_cleanup(*, max_age_s: float = STAGED_MAX_AGE_S) -> int:
    """Delete staged uploads nobody saved within `max_age_s`. Returns how many."""
    now, removed = time.time(), 0
    for meta in _staged_dir().glob("*.json"):
        if now - meta.stat().st_mtime > max_age_s:
            _remove(meta.with_suffix(".data"))
            _remove(meta)
            removed += 1
    # A .data file without its sidecar (a crash between the two writes) goes too.
    for data in _staged_dir().glob("*.data"):
        if not data.with_suffix(".json").exists() and now - data.stat().st_mtime > max_age_s:
            _remove(data)
            removed += 1
    return removed


def dataset_validate_staged(*, staged: StagedUpload, mapping: Mapping) -> ValidationReport:
    return dataset_io.validate(
        staged.path,
        fmt=staged.format,
        encoding=staged.encoding,
        input_field=mapping.input_field,
        target_field=mapping.target_field,
        classification=mapping.classification,
        max_rows=settings.DATASET_MAX_ROWS,
        split_field=mapping.split_field,
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def dataset_create_from_staged(
    *,
    project: Project,
    user: User,
    staged: StagedUpload,
    mapping: Mapping,
    name: str,
    profile_model: CatalogModel | None,
    licence: str | None = None,
) -> Dataset:
    """Validate, split and save a staged upload; start its profile job.

    Raises DatasetRejected when no valid row is left, and JobLimitReached (leaving the
    upload staged, so it can be saved later) when the profile job may not start now.
    """

    if profile_model is not None:
        job_limits_check(project=project, user=user)  # before the slow part; again at create
    report = dataset_validate_staged(staged=staged, mapping=mapping)
    if report.valid_rows == 0:
        raise DatasetRejected("No valid rows are left after validation: " + report.summary())
    folder = Path(settings.DATASETS_DIR) / str(project.id)
    folder.mkdir(parents=True, exist_ok=True)
    stem = secrets.token_hex(12)
    suffix = {"jsonl": ".jsonl", "json": ".json", "csv": ".csv", "tsv": ".tsv"}.get(
        staged.format, ".txt"
    )
    original = folder / f"{stem}{suffix}"
    clean = folder / f"{stem}.clean.jsonl"
    try:
        counts = dataset_io.write_clean(
            staged.path,
            clean,
            fmt=staged.format,
            encoding=staged.encoding,
            input_field=mapping.input_field,
            target_field=mapping.target_field,
            seed=mapping.seed,
            fractions=mapping.fractions,
            stratify=mapping.classification,
            max_rows=settings.DATASET_MAX_ROWS,
            split_field=mapping.split_field,
        )
        shutil.move(str(staged.path), original)
        size, sha = original.stat().st_size, _sha256(original)
        try:
            dataset_files_publish(project_id=project.id, original=original, clean=clean)
        except StoreError as exc:
            raise DatasetRejected(str(exc)) from exc
        with transaction.atomic():
            dataset = Dataset.objects.create(
                project=project,
                name=name.strip()[:120] or staged.name,
                original_filename=staged.filename,
                stored_name=original.name,
                format=staged.format,
                encoding=staged.encoding,
                had_bom=bool(staged.inspection.get("had_bom")),
                size_bytes=size,
                sha256=sha,
                input_field=mapping.input_field,
                target_field=mapping.target_field,
                classification=mapping.classification,
                labels=report.labels or {},
                total_rows=report.total_rows,
                valid_rows=report.valid_rows,
                dropped=report.dropped,
                problems=[asdict(p) for p in report.problems[:100]],
                summary=report.summary()[:500],
                split_seed=mapping.seed,
                split_fractions=list(mapping.fractions),
                split_counts=counts,
                split_source=(
                    "files"
                    if staged.split_files and mapping.split_field == SPLIT_COLUMN
                    else mapping.split_field
                ),
                licence=(staged.licence if licence is None else licence).strip()[:200],
                created_by=user,
            )
            activity_record(
                project=project,
                actor=user,
                verb=ActivityVerb.DATASET_UPLOADED,
                description=f"uploaded dataset “{dataset.name}” ({dataset.valid_rows} rows)",
            )
            if profile_model is not None:
                job_create_profile(
                    project=project, user=user, dataset=dataset, base_model=profile_model
                )
    except BaseException:
        _remove(clean)
        if original.exists() and not staged.path.exists():
            shutil.move(str(original), staged.path)  # keep the staged upload retryable
        raise
    _remove(_staged_dir() / f"{staged.token}.json")
    return dataset


def _remove_all(paths: list[Path]) -> None:
    for path in paths:
        _remove(path)


def dataset_rename(*, dataset: Dataset, name: str, actor: User | None = None) -> Dataset:
    old = dataset.name
    dataset.name = name.strip()[:120]
    with transaction.atomic():
        dataset.save(update_fields=["name", "updated_at"])
        if actor is not None and old != dataset.name:
            activity_record(
                project=dataset.project_id,
                actor=actor,
                verb=ActivityVerb.DATASET_RENAMED,
                description=f"renamed dataset “{old}” to “{dataset.name}”",
            )
    return dataset


def _delete_files(dataset: Dataset) -> None:
    try:
        dataset_files_delete(dataset)
    except StoreError:
        logger.exception("Dataset %s: its files stay in the store", dataset.id)


def dataset_delete(*, dataset: Dataset, actor: User | None = None) -> None:
    paths = [dataset.original_path, dataset.clean_path]
    with transaction.atomic():
        if actor is not None:
            activity_record(
                project=dataset.project_id,
                actor=actor,
                verb=ActivityVerb.DATASET_DELETED,
                description=f"deleted dataset “{dataset.name}”",
            )
        dataset.delete()
        transaction.on_commit(lambda: _remove_all(paths))
        transaction.on_commit(lambda: _delete_files(dataset))


def dataset_record_profile(*, dataset_id: int, profile: dict[str, Any]) -> None:
    Dataset.objects.filter(id=dataset_id).update(profile=profile)
