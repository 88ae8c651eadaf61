"""The serving log: one row per request to a project's OpenAI-compatible endpoint."""

from __future__ import annotations

from django.db import models


class ServingLog(models.Model):
    """What one API request cost and how it ended, written by the web after answering.

    `latency_ms` is from the request's arrival to its last byte handed to the server;
    `ttft_ms` to the first generated text (None when none came: an error, or an empty
    answer). `status` is the HTTP status the client got (a stream that failed after it
    started keeps its 200 here, with `error` set).
    """

    project = models.ForeignKey(
        "lifecycle_app.Project", on_delete=models.CASCADE, related_name="serving_logs"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    model = models.CharField(max_length=120, blank=True)
    status = models.PositiveSmallIntegerField()
    error = models.CharField(max_length=200, blank=True)
    latency_ms = models.PositiveIntegerField()
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    streamed = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["project", "created_at"], name="servinglog_project_time")]

    def __str__(self) -> str:
        return f"{self.status} in {self.latency_ms} ms ({self.project_id})"

    @property
    def failed(self) -> bool:
        return self.status >= 400 or bool(self.error)
