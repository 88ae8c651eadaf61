"""The job engine's records: Job (the source of truth) and its metric points."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class JobKind(models.TextChoices):
    GENERATE = "generate", "Generate"
    PROFILE = "profile", "Dataset profile"
    REGISTER_MODEL = "register_model", "Add model"
    TRIAL = "trial", "Prompt trial"
    FINETUNE = "finetune", "Fine-tuning"
    EVALUATE = "evaluate", "Evaluation"
    ALIGN = "align", "Alignment (DPO)"
    EXPORT = "export", "Export"
    INDEX = "index", "Knowledge-base index"
    APP_EVALUATE = "app_evaluate", "Application evaluation"


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING)


class Job(models.Model):
    """The source of truth for a unit of background work (see workers/tasks/)."""

    project = models.ForeignKey(
        "lifecycle_app.Project", on_delete=models.CASCADE, related_name="jobs"
    )
    kind = models.CharField(max_length=20, choices=JobKind.choices)
    status = models.CharField(
        max_length=10, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True
    )
    base_model = models.ForeignKey(
        "lifecycle_app.CatalogModel",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="jobs",
    )
    dataset = models.ForeignKey(
        "Dataset", on_delete=models.SET_NULL, null=True, blank=True, related_name="jobs"
    )
    prompt_template = models.ForeignKey(
        "lifecycle_app.PromptTemplate",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="jobs",
    )
    params = models.JSONField(default=dict)
    queue = models.CharField(max_length=20, default="cpu")
    # Measured progress: `progress_done` of `progress_total` `progress_unit`.
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    progress_unit = models.CharField(max_length=20, blank=True)
    message = models.CharField(max_length=300, blank=True)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    traceback = models.TextField(blank=True)
    # The claim's token: each claim (first run, resume, takeover) increments it, and every
    # write a worker makes for the job checks it (jobs/fencing.py).
    attempt = models.PositiveIntegerField(default=0)
    # One entry per attempt: worker, started/ended (ISO), outcome; see `attempt_spans`.
    attempts = models.JSONField(default=list, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="jobs"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # When the job's message was last handed to the broker, and how many times: the
    # reaper sends a queued job again when its message was lost (jobs/services.py).
    enqueued_at = models.DateTimeField(null=True, blank=True)
    sends = models.PositiveIntegerField(default=0)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["project", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def percent(self) -> int:
        if self.status == JobStatus.SUCCEEDED:
            return 100
        if not self.progress_total:
            return 0
        return min(100, int(100 * self.progress_done / self.progress_total))

    @property
    def duration_s(self) -> float | None:
        if not self.started_at:
            return None
        from django.utils import timezone

        end = self.finished_at or timezone.now()
        return (end - self.started_at).total_seconds()

    @property
    def attempt_spans(self) -> list[dict[str, object]]:
        """Each attempt with its duration in seconds (None while it runs)."""
        from django.utils.dateparse import parse_datetime

        spans = []
        for entry in self.attempts or []:
            start = parse_datetime(entry.get("started_at") or "")
            end = parse_datetime(entry.get("ended_at") or "")
            spans.append(
                {**entry, "duration_s": (end - start).total_seconds() if start and end else None}
            )
        return spans


class MetricPoint(models.Model):
    """One value of one curve of a job (train loss, validation loss, learning rate, ...)
    at one step. A resumed job writes a step again: (job, name, step) is unique."""

    job = models.ForeignKey(
        "lifecycle_app.Job", on_delete=models.CASCADE, related_name="metric_points"
    )
    name = models.CharField(max_length=40)
    step = models.PositiveIntegerField()
    value = models.FloatField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["job", "name", "step"]
        constraints = [
            models.UniqueConstraint(fields=["job", "name", "step"], name="one_point_per_step")
        ]

    def __str__(self) -> str:
        return f"{self.name}@{self.step}={self.value:.4g} (job {self.job_id})"
