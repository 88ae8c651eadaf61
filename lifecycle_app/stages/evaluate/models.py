"""Evaluation records: each candidate of an evaluation and its per-row outputs."""

from __future__ import annotations

from django.db import models

from lifecycle_app.stages.prompt.models import ExampleStatus


class CandidateStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    DONE = "done", "Scored"
    FAILED = "failed", "Failed"
    UNAVAILABLE = "unavailable", "Unavailable"
    CANCELLED = "cancelled", "Cancelled"


class EvaluationCandidate(models.Model):
    """One candidate of an evaluation job: a model (a catalog model or a project's
    fine-tuned one; later aligned or exported ones) with the prompt it is asked with.

    `spec` is the `workers.ml.params.CandidateSpec` the job runs (template snapshot, shots,
    generation settings), copied at creation so the row still says what ran after the
    trial, template or model it came from is gone. `base_model` and `source_job` point at
    where it came from while those exist; a candidate whose model, weights or source job
    is gone is marked unavailable with the reason, never run.
    """

    job = models.ForeignKey(
        "lifecycle_app.Job", on_delete=models.CASCADE, related_name="eval_candidates"
    )
    position = models.PositiveIntegerField()
    label = models.CharField(max_length=200)
    # "base" | "trial" | "finetuned" | "aligned" | "exported"
    kind = models.CharField(max_length=20)
    base_model = models.ForeignKey(
        "lifecycle_app.CatalogModel",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    source_job = models.ForeignKey(
        "lifecycle_app.Job", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    spec = models.JSONField(default=dict)
    status = models.CharField(
        max_length=12, choices=CandidateStatus.choices, default=CandidateStatus.PENDING
    )
    reason = models.TextField(blank=True)
    # {"rouge1": ..., "perplexity": ...}: the set's figures (see workers.ml.scoring.metrics.score_eval)
    scores = models.JSONField(default=dict, blank=True)
    # The forgetting check: {"mc_accuracy", "mc_accuracy_raw", "mc_questions", "answer_match",
    # "rougeL", "perplexity"} (workers/ml/evaluation/general.py)
    general_scores = models.JSONField(default=dict, blank=True)
    stats = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["job", "position"]
        constraints = [
            models.UniqueConstraint(fields=["job", "position"], name="one_candidate_per_position")
        ]

    def __str__(self) -> str:
        return f"{self.label} (evaluation {self.job_id})"

    @property
    def is_scored(self) -> bool:
        return self.status == CandidateStatus.DONE


class EvaluationExample(models.Model):
    """One test row as one candidate answered it, with every metric's per-row value."""

    candidate = models.ForeignKey(
        "lifecycle_app.EvaluationCandidate", on_delete=models.CASCADE, related_name="examples"
    )
    index = models.PositiveIntegerField()
    line = models.PositiveIntegerField()
    input = models.TextField()
    prompt = models.TextField(blank=True)
    reference = models.TextField(blank=True)
    output = models.TextField(blank=True)
    status = models.CharField(
        max_length=10, choices=ExampleStatus.choices, default=ExampleStatus.PENDING
    )
    output_tokens = models.PositiveIntegerField(default=0)
    finish_reason = models.CharField(max_length=20, blank=True)
    scores = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["candidate", "index"]
        constraints = [
            models.UniqueConstraint(
                fields=["candidate", "index"], name="one_eval_example_per_index"
            )
        ]

    def __str__(self) -> str:
        return f"example {self.index} of candidate {self.candidate_id}"
