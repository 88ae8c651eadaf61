"""Dataset reads: a project's datasets, one dataset, its profile job, the profiling tokenizer."""

from __future__ import annotations

from django.http import Http404

from lifecycle_app.catalog.models import CatalogModel
from lifecycle_app.datasets.models import Dataset
from lifecycle_app.jobs.models import Job, JobKind
from lifecycle_app.projects.models import Project
from lifecycle_app.projects.selectors import MAX_ID, stages_for_project
from lifecycle_app.stages.select.selectors import picked_model_slug
from workers.ml.data.validation import ValidationReport, split_sizes, split_warnings


def dataset_list(*, project: Project) -> list[Dataset]:
    return list(Dataset.objects.filter(project=project).select_related("created_by"))


def dataset_get(*, project: Project, dataset_id: int) -> Dataset:
    if not 0 < dataset_id <= MAX_ID:
        raise Http404("No such dataset.")
    dataset = Dataset.objects.filter(project=project, id=dataset_id).first()
    if dataset is None:
        raise Http404("No such dataset.")
    return dataset


def latest_profile_job(*, dataset: Dataset) -> Job | None:
    return (
        Job.objects.select_related("created_by", "base_model", "project")
        .filter(dataset=dataset, kind=JobKind.PROFILE)
        .order_by("-created_at", "-id")
        .first()
    )


def split_warnings_before_saving(
    *, report: ValidationReport, fractions: tuple[float, float, float]
) -> list[str]:
    """Splits that saving this report's rows at `fractions` would leave empty."""
    try:
        sizes = split_sizes(report.valid_rows, report.labels, fractions)
        return split_warnings(sizes, fractions, saved=False)
    except ValueError:  # fractions the form refuses anyway
        return []


def split_counts_before_saving(
    *, report: ValidationReport, fractions: tuple[float, float, float]
) -> dict[str, int] | None:
    """The rows each split would get: from the split column when the mapping names one,
    else as the random split at `fractions` would assign them."""
    if report.splits is not None:
        return report.splits
    try:
        return split_sizes(report.valid_rows, report.labels, fractions)
    except ValueError:  # fractions the form refuses anyway
        return None


def split_warnings_of_dataset(*, dataset: Dataset) -> list[str]:
    """Splits of a saved dataset that got no rows though their fraction is not zero."""
    fractions = dataset.split_fractions
    if len(fractions) != 3:
        return []
    try:
        return split_warnings(dataset.split_counts, tuple(fractions), saved=True)  # type: ignore[arg-type]
    except ValueError:
        return []


BUNDLED_SLUG = "smollm2-135m-instruct"


def profile_model_for(*, project: Project) -> CatalogModel | None:
    """The tokenizer to profile with: the project's chosen model, else the bundled one."""
    slug = picked_model_slug(stages_for_project(project=project))
    for candidate in (slug, BUNDLED_SLUG):
        if candidate:
            model = CatalogModel.objects.catalog().filter(slug=candidate).first()
            if model is not None:
                return model
    return CatalogModel.objects.catalog().order_by("is_test_model", "id").first()
