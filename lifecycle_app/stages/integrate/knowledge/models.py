"""A project's knowledge base: uploaded documents and the indexes built from them."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import models

from workers.ml.retrieval.documents import KIND_NAMES


def knowledge_dir(project_id: int) -> Path:
    """Where a project's documents are stored (generated names, outside static/media)."""
    return Path(settings.VAR_DIR) / "knowledge" / str(project_id)


class KnowledgeDocument(models.Model):
    project = models.ForeignKey(
        "lifecycle_app.Project", on_delete=models.CASCADE, related_name="knowledge_documents"
    )
    name = models.CharField(max_length=255)  # the uploaded file's name, shown and cited
    kind = models.CharField(max_length=10)  # workers.ml.retrieval.documents.KINDS
    text_field = models.CharField(max_length=200, blank=True, default="")  # JSON Lines only
    stored_name = models.CharField(max_length=80, unique=True)
    size_bytes = models.BigIntegerField(default=0)
    sha256 = models.CharField(max_length=64)
    characters = models.PositiveIntegerField(default=0)  # of the extracted text
    chunk_count = models.PositiveIntegerField(default=0)  # in the latest index built
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        related_name="knowledge_documents",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name

    @property
    def kind_name(self) -> str:
        return KIND_NAMES.get(self.kind, self.kind)

    @property
    def path(self) -> Path:
        return knowledge_dir(self.project_id) / self.stored_name


class IndexStatus(models.TextChoices):
    BUILDING = "building", "Building"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    RETIRED = "retired", "Retired"  # every document was removed


class KnowledgeIndex(models.Model):
    """One build of the index. The latest READY one is the project's current index."""

    project = models.ForeignKey(
        "lifecycle_app.Project", on_delete=models.CASCADE, related_name="knowledge_indexes"
    )
    job = models.OneToOneField(
        "lifecycle_app.Job",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="knowledge_index",
    )
    status = models.CharField(
        max_length=10, choices=IndexStatus.choices, default=IndexStatus.BUILDING
    )
    folder = models.CharField(max_length=500, blank=True, default="")
    chunk_size = models.PositiveIntegerField()
    chunk_overlap = models.PositiveIntegerField()
    tokenizer_model = models.ForeignKey(
        "lifecycle_app.CatalogModel",
        on_delete=models.SET_NULL,
        null=True,
        related_name="knowledge_indexes",
    )
    tokenizer_name = models.CharField(max_length=200, blank=True, default="")
    embedder = models.CharField(max_length=500, blank=True, default="")  # "" = bundled
    embedder_name = models.CharField(max_length=200, blank=True, default="")
    chunk_count = models.PositiveIntegerField(default=0)
    document_ids = models.JSONField(default=list)  # the documents it was built from
    stats = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    built_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"index #{self.id} ({self.status})"
