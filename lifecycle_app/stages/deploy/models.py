"""Deploy records: exported model variants and API tokens."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class VariantKind(models.TextChoices):
    SAFETENSORS = "safetensors", "Merged safetensors (float32)"
    INT8_WEIGHT = "int8_weight", "int8 weight-only (torchao)"
    ONNX = "onnx", "ONNX with KV cache (onnxruntime)"
    ONNX_INT8 = "onnx_int8", "ONNX block-wise int8 (onnxruntime)"
    INT8 = "int8", "int8 dynamic quantization (loses quality)"


ONNX_KINDS = (VariantKind.ONNX, VariantKind.ONNX_INT8)


class ModelVariant(models.Model):
    """An optimized or exported form of a project's model, made by one export job.

    `measurements` holds what the job measured on its worker, the variant and its parent
    side by side under the same conditions: {"variant": {...}, "parent": {...},
    "settings": {...}} with size_bytes, load_s, tokens_per_s, latency_ms and scores.
    At most one variant per project is deployed (it answers the project's API).
    """

    project = models.ForeignKey(
        "lifecycle_app.Project", on_delete=models.CASCADE, related_name="variants"
    )
    job = models.OneToOneField(
        "lifecycle_app.Job", on_delete=models.CASCADE, related_name="variant"
    )
    kind = models.CharField(max_length=12, choices=VariantKind.choices)
    parent = models.ForeignKey(
        "lifecycle_app.CatalogModel", on_delete=models.PROTECT, related_name="variants_made"
    )
    # The candidate row for a variant PyTorch loads (safetensors, int8 kinds); None for ONNX
    # (onnxruntime serves it from `path`; evaluations and trials need a PyTorch model).
    candidate = models.OneToOneField(
        "lifecycle_app.CatalogModel",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="variant",
    )
    path = models.CharField(max_length=500)
    bundle_path = models.CharField(max_length=500, blank=True)
    measurements = models.JSONField(default=dict, blank=True)
    deployed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project"],
                condition=models.Q(deployed_at__isnull=False),
                name="one_deployed_variant_per_project",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of {self.parent} (job {self.job_id})"

    @property
    def is_deployed(self) -> bool:
        return self.deployed_at is not None

    @property
    def servable(self) -> bool:
        """Every kind is: ONNX variants are served by onnxruntime in the serving worker."""
        return self.kind in VariantKind.values

    @property
    def is_onnx(self) -> bool:
        return self.kind in ONNX_KINDS


class ApiToken(models.Model):
    """A per-project API token. Only its SHA-256 is stored: the token is shown once, when
    it is created. `prefix` (its first characters) lets owners tell tokens apart."""

    project = models.ForeignKey(
        "lifecycle_app.Project", on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=80)
    prefix = models.CharField(max_length=12)
    token_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"API token {self.prefix}… of {self.project}"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
