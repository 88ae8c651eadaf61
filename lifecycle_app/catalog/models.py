"""The model catalog (base models and the project's own candidates) and job artifacts."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models


class ModelSource(models.TextChoices):
    BUNDLED = "bundled", "Bundled with Lifecycle Studio"
    TINY = "tiny", "Tiny local test model"
    LOCAL = "local", "Local folder"
    HUB = "hub", "Hugging Face id (cached on this machine)"


class CatalogModelQuerySet(models.QuerySet["CatalogModel"]):
    def catalog(self) -> CatalogModelQuerySet:
        """The shared catalog: bundled, test and added models (no project's candidates)."""
        return self.filter(project__isnull=True)

    def for_project(self, project: Any) -> CatalogModelQuerySet:
        """What a project can run: the catalog and its own fine-tuned candidates."""
        return self.filter(models.Q(project__isnull=True) | models.Q(project=project))

    def pickable(self) -> CatalogModelQuerySet:
        """What pickers offer. The tiny test model has random weights (its output is noise):
        only tests and development (DEBUG, or LIFECYCLE_SHOW_TEST_MODELS) see it, and the
        candidates trained from it. Read on every call, so a test can switch it."""
        if show_test_models():
            return self
        return self.exclude(is_test_model=True)


def show_test_models() -> bool:
    shown = getattr(settings, "LIFECYCLE_SHOW_TEST_MODELS", None)
    return bool(settings.DEBUG if shown is None else shown)


class CatalogModel(models.Model):
    """A model in the catalog: a base model (no project), or one of a project's own candidates
    (fine-tuned, aligned or exported: `project` and `trained_by_job` set, `parent` the model it
    came from). Shape figures come from the model's config, never typed in."""

    slug = models.SlugField(max_length=80, unique=True)
    name = models.CharField(max_length=120)
    source = models.CharField(max_length=10, choices=ModelSource.choices)
    location = models.CharField(max_length=500, blank=True)
    description = models.TextField(blank=True)
    licence = models.CharField(max_length=80, blank=True)
    family = models.CharField(max_length=20, blank=True)
    architecture = models.CharField(max_length=80, blank=True)
    n_params = models.BigIntegerField(null=True, blank=True)
    context_length = models.PositiveIntegerField(null=True, blank=True)
    n_layers = models.PositiveIntegerField(null=True, blank=True)
    hidden_size = models.PositiveIntegerField(null=True, blank=True)
    vocab_size = models.PositiveIntegerField(null=True, blank=True)
    weights_present = models.BooleanField(default=False)
    # workers.ml.planner.shape.ModelShape.to_json(): the sizes the compute planner works from.
    shape = models.JSONField(default=dict, blank=True)
    is_test_model = models.BooleanField(default=False)
    # A fine-tuned candidate belongs to the project that trained it (other projects do not
    # see it); catalog models have no project.
    project = models.ForeignKey(
        "Project", on_delete=models.CASCADE, null=True, blank=True, related_name="candidates"
    )
    parent = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="children"
    )
    trained_by_job = models.OneToOneField(
        "Job", on_delete=models.SET_NULL, null=True, blank=True, related_name="candidate"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = CatalogModelQuerySet.as_manager()

    class Meta:
        ordering = ["is_test_model", "project_id", "n_params", "name"]

    def __str__(self) -> str:
        return self.name


class Artifact(models.Model):
    """A file set a job produced (an adapter or a model), with its size and checksums."""

    job = models.ForeignKey("lifecycle_app.Job", on_delete=models.CASCADE, related_name="artifacts")
    project = models.ForeignKey(
        "lifecycle_app.Project", on_delete=models.CASCADE, related_name="artifacts"
    )
    kind = models.CharField(max_length=20)  # "lora_adapter" | "prompt_adapter" | "model"
    path = models.CharField(max_length=500)
    size_bytes = models.BigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)  # of the main weights file
    files = models.JSONField(default=list, blank=True)  # [{"path", "size", "sha256"}]
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["job", "kind"], name="one_artifact_per_kind")
        ]

    def __str__(self) -> str:
        return f"{self.kind} of job {self.job_id}"
