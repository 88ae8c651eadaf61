"""Prompt records: versioned templates, trial rows and playground outputs."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from lifecycle_app.common.labels import versioned_name


class PromptTemplate(models.Model):
    """One version of a prompt template (see workers/ml/prompts.py for the placeholders).

    Versions are immutable: editing writes version + 1 under the same name, so a trial
    always points at the exact text it used.
    """

    project = models.ForeignKey(
        "lifecycle_app.Project", on_delete=models.CASCADE, related_name="templates"
    )
    name = models.CharField(max_length=80)
    version = models.PositiveIntegerField(default=1)
    instruction = models.TextField(blank=True)
    example_format = models.TextField(blank=True)
    body = models.TextField()
    use_chat_template = models.BooleanField(default=True)
    # How shots are written: as earlier chat turns, or inline in the one user message
    # (workers/ml/prompts.py). Versions saved before this field ran theirs inline.
    shot_style = models.CharField(
        max_length=10,
        choices=[("chat", "As earlier chat turns"), ("inline", "Inline, in one message")],
        default="chat",
    )
    note = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "name", "version"], name="one_template_version"
            )
        ]

    def __str__(self) -> str:
        return versioned_name(self.name, self.version)


class GenerationOutput(models.Model):
    """One generated example of a generation job (one per prompt)."""

    job = models.ForeignKey("lifecycle_app.Job", on_delete=models.CASCADE, related_name="outputs")
    index = models.PositiveIntegerField(default=0)
    prompt = models.TextField()
    text = models.TextField(blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    finish_reason = models.CharField(max_length=20, blank=True)
    error = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["job", "index"]
        constraints = [
            models.UniqueConstraint(fields=["job", "index"], name="one_output_per_index")
        ]

    def __str__(self) -> str:
        return f"output {self.index} of job {self.job_id}"


class ExampleStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped"


class TrialExample(models.Model):
    """One evaluation row of a prompt trial: the exact prompt, the reference, the output
    and its scores. Written as pending when the trial starts, filled batch by batch."""

    job = models.ForeignKey("lifecycle_app.Job", on_delete=models.CASCADE, related_name="examples")
    index = models.PositiveIntegerField()
    line = models.PositiveIntegerField(help_text="line of the row in the dataset file")
    input = models.TextField()
    prompt = models.TextField(blank=True)
    reference = models.TextField(blank=True)
    output = models.TextField(blank=True)
    status = models.CharField(
        max_length=10, choices=ExampleStatus.choices, default=ExampleStatus.PENDING
    )
    prompt_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    truncated = models.BooleanField(default=False)
    finish_reason = models.CharField(max_length=20, blank=True)
    scores = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["job", "index"]
        constraints = [
            models.UniqueConstraint(fields=["job", "index"], name="one_example_per_index")
        ]

    def __str__(self) -> str:
        return f"example {self.index} of trial {self.job_id}"
