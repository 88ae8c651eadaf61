"""Uploaded datasets with their mapping, splits and profile."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import models


class Dataset(models.Model):
    """An uploaded, validated and split dataset.

    The original file and its cleaned JSON Lines copy (one {"input", "target", "split",
    "line"} object per valid row) live under settings.DATASETS_DIR/<project id>/ with
    generated names. The split is fixed at creation, so every later job reads the same
    examples.
    """

    project = models.ForeignKey(
        "lifecycle_app.Project", on_delete=models.CASCADE, related_name="datasets"
    )
    name = models.CharField(max_length=120)
    original_filename = models.CharField(max_length=255)
    stored_name = models.CharField(max_length=80, unique=True)
    format = models.CharField(max_length=10)
    encoding = models.CharField(max_length=20, default="utf-8")
    had_bom = models.BooleanField(default=False)
    size_bytes = models.BigIntegerField(default=0)
    sha256 = models.CharField(max_length=64)
    input_field = models.CharField(max_length=200)
    target_field = models.CharField(max_length=200)
    classification = models.BooleanField(default=False)
    labels = models.JSONField(default=dict, blank=True)
    total_rows = models.PositiveIntegerField(default=0)
    valid_rows = models.PositiveIntegerField(default=0)
    dropped = models.JSONField(default=dict, blank=True)
    problems = models.JSONField(default=list, blank=True)
    summary = models.CharField(max_length=500, blank=True)
    split_seed = models.PositiveIntegerField(default=0)
    split_fractions = models.JSONField(default=list)
    split_counts = models.JSONField(default=dict)
    # Where the split came from: "" a random split (split_seed, split_fractions); else the
    # name of the split column, or "files" when one file was uploaded per split.
    split_source = models.CharField(max_length=200, blank=True, default="")
    # The data's licence as the uploader states it (e.g. "CC BY-SA 4.0"); the model card of
    # a model trained on it names it.
    licence = models.CharField(max_length=200, blank=True, default="")
    profile = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="datasets"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name

    @property
    def original_path(self) -> Path:
        return Path(settings.DATASETS_DIR) / str(self.project_id) / self.stored_name

    @property
    def clean_path(self) -> Path:
        return self.original_path.with_name(self.stored_name.split(".")[0] + ".clean.jsonl")
