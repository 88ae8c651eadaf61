"""Application records: versioned applications, questions handed to a person, and
evaluation sets of questions with reference answers."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from lifecycle_app.common.labels import versioned_name


class RetrievalMode(models.TextChoices):
    OFF = "off", "Off (the model alone)"
    BM25 = "bm25", "BM25 (words)"
    DENSE = "dense", "Dense (meaning)"
    HYBRID = "hybrid", "Hybrid (both, rank fusion)"


class ReasoningAid(models.TextChoices):
    NONE = "none", "None"
    STEP_BY_STEP = "step_by_step", "Step by step (answer after 'Answer:')"
    CALCULATOR = "calculator", "Calculator tool (CALC(...))"


class Application(models.Model):
    project = models.ForeignKey(
        "lifecycle_app.Project", on_delete=models.CASCADE, related_name="applications"
    )
    name = models.CharField(max_length=80)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="one_application_name")
        ]

    def __str__(self) -> str:
        return self.name


# What a version is made of (besides its model); equal values make no new version.
VERSION_FIELDS = (
    "template",
    "retrieval",
    "top_k",
    "threshold",
    "cite",
    "reasoning",
    "fallback_min_score",
    "max_new_tokens",
)


class ApplicationVersion(models.Model):
    """One version of an application. Versions are immutable: a change is saved as
    number + 1, so an answer, a fallback question or an evaluation always points at the
    exact settings it used.

    The candidate is a catalog model (the catalog's, or a project's fine-tuned or aligned
    one) or an exported variant; `model_label` keeps its name once it is gone.
    """

    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField(default=1)
    candidate_kind = models.CharField(max_length=20)  # base | finetuned | aligned | exported
    model = models.ForeignKey(
        "lifecycle_app.CatalogModel",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    variant = models.ForeignKey(
        "lifecycle_app.ModelVariant",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    model_label = models.CharField(max_length=200)
    template = models.TextField()
    retrieval = models.CharField(
        max_length=10, choices=RetrievalMode.choices, default=RetrievalMode.HYBRID
    )
    top_k = models.PositiveSmallIntegerField(default=4)
    threshold = models.FloatField(null=True, blank=True)
    cite = models.BooleanField(default=True)
    reasoning = models.CharField(
        max_length=20, choices=ReasoningAid.choices, default=ReasoningAid.NONE
    )
    # Below this top-passage score the app answers "I don't know" (None: only when
    # retrieval finds nothing). See workers/ml/application/answer.py `confidence`.
    fallback_min_score = models.FloatField(null=True, blank=True)
    max_new_tokens = models.PositiveIntegerField(default=96)
    note = models.CharField(max_length=200, blank=True)
    # The version the project's API answers with (at most one per project, kept so by
    # `version_deploy`); the API answers with this version's own model.
    deployed_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["application", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["application", "number"], name="one_app_version")
        ]

    def __str__(self) -> str:
        return versioned_name(self.application.name, self.number)


class FallbackQuestion(models.Model):
    """A question the application handed to a person instead of answering."""

    version = models.ForeignKey(
        ApplicationVersion, on_delete=models.CASCADE, related_name="fallback_questions"
    )
    question = models.TextField()
    reason = models.CharField(max_length=300)
    source = models.CharField(max_length=20, default="playground")  # playground | api
    asked_at = models.DateTimeField(auto_now_add=True)
    handled_at = models.DateTimeField(null=True, blank=True)
    handled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    note = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-asked_at", "-id"]

    def __str__(self) -> str:
        return self.question[:60]


class AppEvalSet(models.Model):
    """Questions with reference answers to measure applications on."""

    project = models.ForeignKey(
        "lifecycle_app.Project", on_delete=models.CASCADE, related_name="app_eval_sets"
    )
    name = models.CharField(max_length=80)
    source = models.CharField(max_length=20, default="upload")  # upload | drafted | sample
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="one_app_eval_set_name")
        ]

    def __str__(self) -> str:
        return self.name


class QuestionStatus(models.TextChoices):
    PENDING = "pending", "Waiting for review"
    ACCEPTED = "accepted", "Accepted"
    REJECTED = "rejected", "Rejected"


class AppEvalQuestion(models.Model):
    """One question. Drafted ones start pending: only accepted questions count."""

    eval_set = models.ForeignKey(AppEvalSet, on_delete=models.CASCADE, related_name="questions")
    position = models.PositiveIntegerField()
    question = models.TextField()
    reference = models.TextField()
    # Where the answer is, when known: a document name and/or a passage of its text.
    document_name = models.CharField(max_length=255, blank=True)
    passage = models.TextField(blank=True)
    status = models.CharField(
        max_length=10, choices=QuestionStatus.choices, default=QuestionStatus.ACCEPTED
    )
    drafted = models.BooleanField(default=False)

    class Meta:
        ordering = ["eval_set", "position"]
        constraints = [
            models.UniqueConstraint(fields=["eval_set", "position"], name="one_question_position")
        ]

    def __str__(self) -> str:
        return self.question[:60]


class AppEvalAnswer(models.Model):
    """One answer of an app evaluation: a version, a question, with or without retrieval."""

    job = models.ForeignKey(
        "lifecycle_app.Job", on_delete=models.CASCADE, related_name="app_answers"
    )
    version = models.ForeignKey(
        ApplicationVersion, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    question = models.ForeignKey(
        AppEvalQuestion, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    index = models.PositiveIntegerField()
    with_retrieval = models.BooleanField()
    answer = models.TextField(blank=True)
    citations = models.JSONField(default=list, blank=True)
    scores = models.JSONField(default=dict, blank=True)
    fallback = models.BooleanField(default=False)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["job", "index"]
        constraints = [
            models.UniqueConstraint(fields=["job", "index"], name="one_app_answer_per_index")
        ]

    def __str__(self) -> str:
        return f"answer {self.index} of app evaluation {self.job_id}"
