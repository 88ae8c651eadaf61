"""Dataset pages: list, upload, mapping and validation report, detail, rename, delete, download."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import redirect, render
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from lifecycle_app.common.http import HtmxHttpRequest, authed_user
from lifecycle_app.common.uploads import SizeLimitedUploadHandler, size_limited_upload
from lifecycle_app.datasets import selectors
from lifecycle_app.datasets import services as dataset_services
from lifecycle_app.datasets.files import dataset_file_open
from lifecycle_app.datasets.forms import DatasetMappingForm, DatasetRenameForm, DatasetUploadForm
from lifecycle_app.datasets.models import Dataset
from lifecycle_app.jobs.services import JobLimitReached
from lifecycle_app.projects import selectors as projects_selectors
from lifecycle_app.projects.models import Membership, Project
from lifecycle_app.projects.steps import StepSlug
from lifecycle_app.storage import StoreError, StoreMissing
from workers.ml.data.records import DatasetRejected
from workers.ml.data.sniff import DELIMITER_NAMES
from workers.ml.data.splits import SPLIT_COLUMN

# Column names taken as a split column when an upload has one.
SPLIT_COLUMN_NAMES = {SPLIT_COLUMN, "partition", "subset"}


def _rejection_points(rejection: DatasetRejected | None, limit: int = 20) -> list[str]:
    """The problems of a rejection worth a bullet: distinct, and not already its summary."""
    if rejection is None:
        return []
    summary = str(rejection)
    points = dict.fromkeys(p.message for p in rejection.problems if p.message not in summary)
    return list(points)[:limit]


def _list_context(project: Project, membership: Membership, **extra: Any) -> dict[str, Any]:
    return {
        "project": project,
        "membership": membership,
        "datasets": selectors.dataset_list(project=project),
        "max_size": filesizeformat(settings.DATASET_MAX_BYTES),
        "max_rows": settings.DATASET_MAX_ROWS,
        **extra,
    }


@login_required
@require_GET
def dataset_list(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    project, membership = projects_selectors.project_get_for_user(user=request.user, slug=slug)
    context = _list_context(project, membership, form=DatasetUploadForm())
    return render(request, "datasets/list.html", context)


@login_required
@require_POST
@size_limited_upload
def dataset_upload(
    request: HtmxHttpRequest, slug: str, size_limit: SizeLimitedUploadHandler
) -> HttpResponse:
    project, membership = projects_selectors.project_get_for_user(
        user=request.user, slug=slug, write=True
    )
    form = DatasetUploadForm(request.POST, request.FILES)
    rejection: DatasetRejected | None = None
    if size_limit.too_large:
        form = DatasetUploadForm({"name": request.POST.get("name", "")})
        form.is_valid()
        form.errors.clear()  # the body was discarded: say only why
        form.add_error(
            "file",
            f"The file is larger than the {filesizeformat(settings.DATASET_MAX_BYTES)} limit "
            "and was not stored. Split it, or raise LIFECYCLE_DATASET_MAX_BYTES.",
        )
    elif form.is_valid():
        user = authed_user(request)
        try:
            upload = form.cleaned_data.get("file")
            splits = [
                (split, form.cleaned_data.get(key))
                for split, key in (
                    ("train", "file"),
                    ("validation", "validation_file"),
                    ("test", "test_file"),
                )
            ]
            if upload is not None and any(f is not None for _, f in splits[1:]):
                staged = dataset_services.dataset_stage_split_files(
                    project=project,
                    user=user,
                    parts=[
                        (split, Path(f.temporary_file_path()), f.name or split)
                        for split, f in splits
                        if f is not None
                    ],
                    name=form.cleaned_data["name"],
                    licence=form.cleaned_data["licence"],
                )
            elif upload is not None:
                staged = dataset_services.dataset_stage_file(
                    project=project,
                    user=user,
                    path=Path(upload.temporary_file_path()),
                    filename=upload.name or "upload",
                    name=form.cleaned_data["name"],
                    licence=form.cleaned_data["licence"],
                )
            else:
                staged = dataset_services.dataset_stage_text(
                    project=project,
                    user=user,
                    text=form.cleaned_data["text"],
                    name=form.cleaned_data["name"],
                    licence=form.cleaned_data["licence"],
                )
        except DatasetRejected as exc:
            rejection = exc
        else:
            return redirect("dataset_staged", slug=project.slug, token=staged.token)
    context = _list_context(
        project,
        membership,
        form=form,
        rejection=rejection,
        rejection_points=_rejection_points(rejection),
    )
    return render(request, "datasets/list.html", context)


def _mapping_initial(staged: dataset_services.StagedUpload, project: Project) -> dict[str, Any]:
    inspection = staged.inspection
    stages = projects_selectors.stages_for_project(project=project)
    task = projects_selectors.step_answers(stages, "scope", StepSlug.USE_CASE).get("task_type")
    fields = list(inspection.get("fields") or [])
    input_field = inspection.get("suggested_input") or (fields[0] if fields else None)
    target_field = inspection.get("suggested_target") or next(
        (f for f in fields if f != input_field), input_field
    )
    # A column named like a split column is taken as one (and always after a per-split upload).
    split_field = next((f for f in fields if f.strip().lower() in SPLIT_COLUMN_NAMES), "")
    return {
        "name": staged.name,
        "licence": staged.licence,
        "split_field": split_field,
        "input_field": input_field,
        "target_field": target_field,
        "classification": task == "classification",
        "seed": 42,
        "train": 0.8,
        "validation": 0.1,
        "test": 0.1,
    }


def _mapping(form: DatasetMappingForm) -> dataset_services.Mapping:
    data = form.cleaned_data
    return dataset_services.Mapping(
        input_field=data["input_field"],
        target_field=data["target_field"],
        classification=data["classification"],
        seed=data["seed"],
        fractions=(data["train"], data["validation"], data["test"]),
        split_field=data.get("split_field") or "",
    )


@login_required
@require_http_methods(["GET", "POST"])
def dataset_staged(request: HtmxHttpRequest, slug: str, token: str) -> HttpResponse:
    project, membership = projects_selectors.project_get_for_user(
        user=request.user, slug=slug, write=request.method == "POST"
    )
    staged = dataset_services.staged_get(project=project, token=token)
    fields = list(staged.inspection.get("fields") or [])
    report = None
    rejection = None
    fractions: tuple[float, float, float] | None = None
    split_field = ""
    if request.method == "POST":
        form = DatasetMappingForm(request.POST, fields=fields)
        if form.is_valid():
            mapping = _mapping(form)
            fractions, split_field = mapping.fractions, mapping.split_field
            try:
                if request.POST.get("action") == "save":
                    dataset = dataset_services.dataset_create_from_staged(
                        project=project,
                        user=authed_user(request),
                        staged=staged,
                        mapping=mapping,
                        name=form.cleaned_data["name"],
                        profile_model=selectors.profile_model_for(project=project),
                        licence=form.cleaned_data["licence"],
                    )
                    url = reverse("dataset_detail", args=[project.slug, dataset.id])
                    if request.htmx:  # a new page, not a fragment inside the form
                        return HttpResponseClientRedirect(url)
                    return redirect(url)
                report = dataset_services.dataset_validate_staged(staged=staged, mapping=mapping)
            except DatasetRejected as exc:
                rejection = exc
            except JobLimitReached as exc:
                form.add_error(None, f"Not saved yet: {exc}")
    else:
        initial = _mapping_initial(staged, project)
        form = DatasetMappingForm(initial=initial, fields=fields)
        # Check the suggested mapping straight away, so problems show without a click.
        guess = DatasetMappingForm(initial, fields=fields)
        if guess.is_valid():
            fractions, split_field = _mapping(guess).fractions, _mapping(guess).split_field
            try:
                report = dataset_services.dataset_validate_staged(
                    staged=staged, mapping=_mapping(guess)
                )
            except DatasetRejected as exc:
                rejection = exc
    context = {
        "project": project,
        "membership": membership,
        "staged": staged,
        "form": form,
        "report": report,
        "invalid_rows": report.total_rows - report.valid_rows if report else 0,
        "rejection": rejection,
        "rejection_points": _rejection_points(rejection),
        "delimiter": DELIMITER_NAMES.get(staged.inspection.get("delimiter") or ""),
        "split_warnings": (
            selectors.split_warnings_before_saving(report=report, fractions=fractions)
            if report and fractions and not split_field
            else []
        ),
        "split_counts": (
            selectors.split_counts_before_saving(report=report, fractions=fractions)
            if report and fractions
            else None
        ),
        "split_field": split_field,
    }
    template = "datasets/staged.html"
    if request.htmx and not request.htmx.history_restore_request:
        template += "#mapping"
    return render(request, template, context)


@login_required
@require_POST
def dataset_staged_discard(request: HtmxHttpRequest, slug: str, token: str) -> HttpResponse:
    project, _ = projects_selectors.project_get_for_user(user=request.user, slug=slug, write=True)
    dataset_services.staged_discard(
        staged=dataset_services.staged_get(project=project, token=token)
    )
    return redirect("dataset_list", slug=project.slug)


def _detail_context(
    project: Project, membership: Membership, dataset: Dataset, rename_form: DatasetRenameForm
) -> dict[str, Any]:
    return {
        "project": project,
        "membership": membership,
        "dataset": dataset,
        "profile_job": selectors.latest_profile_job(dataset=dataset),
        "rename_form": rename_form,
        "split_warnings": selectors.split_warnings_of_dataset(dataset=dataset),
    }


@login_required
@require_GET
def dataset_detail(request: HtmxHttpRequest, slug: str, dataset_id: int) -> HttpResponse:
    project, membership = projects_selectors.project_get_for_user(user=request.user, slug=slug)
    dataset = selectors.dataset_get(project=project, dataset_id=dataset_id)
    rename_form = DatasetRenameForm(initial={"name": dataset.name})
    context = _detail_context(project, membership, dataset, rename_form)
    template = "datasets/detail.html"
    if request.htmx and not request.htmx.history_restore_request:
        template += "#profile"
    return render(request, template, context)


@login_required
@require_POST
def dataset_rename(request: HtmxHttpRequest, slug: str, dataset_id: int) -> HttpResponse:
    project, membership = projects_selectors.project_get_for_user(
        user=request.user, slug=slug, write=True
    )
    dataset = selectors.dataset_get(project=project, dataset_id=dataset_id)
    form = DatasetRenameForm(request.POST)
    if form.is_valid():
        dataset_services.dataset_rename(
            dataset=dataset, name=form.cleaned_data["name"], actor=authed_user(request)
        )
        return redirect("dataset_detail", slug=project.slug, dataset_id=dataset.id)
    context = _detail_context(project, membership, dataset, form)
    return render(request, "datasets/detail.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def dataset_delete(request: HtmxHttpRequest, slug: str, dataset_id: int) -> HttpResponse:
    project, membership = projects_selectors.project_get_for_user(
        user=request.user, slug=slug, write=request.method == "POST"
    )
    dataset = selectors.dataset_get(project=project, dataset_id=dataset_id)
    if request.method == "POST":
        dataset_services.dataset_delete(dataset=dataset, actor=authed_user(request))
        return redirect("dataset_list", slug=project.slug)
    context = {"project": project, "membership": membership, "dataset": dataset}
    return render(request, "datasets/delete.html", context)


@login_required
@require_GET
def dataset_download(
    request: HtmxHttpRequest, slug: str, dataset_id: int
) -> FileResponse | HttpResponse:
    project, _ = projects_selectors.project_get_for_user(user=request.user, slug=slug)
    dataset = selectors.dataset_get(project=project, dataset_id=dataset_id)
    which = request.GET.get("file", "original")
    if which == "clean":
        filename = f"{Path(dataset.original_filename).stem}.clean.jsonl"
    elif which == "original":
        filename = dataset.original_filename
    else:
        raise Http404("No such file.")
    try:  # streamed from the store: the web never reads a worker's disk
        stream = dataset_file_open(dataset, which)
    except StoreMissing as exc:
        raise Http404("The file is missing from storage.") from exc
    except StoreError as exc:
        return HttpResponse(str(exc), status=503, content_type="text/plain")
    return FileResponse(stream, as_attachment=True, filename=filename)
