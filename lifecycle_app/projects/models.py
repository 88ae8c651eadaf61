"""Projects, memberships, stages (with each step's answers and status) and the activity feed."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    EDITOR = "editor", "Editor"
    VIEWER = "viewer", "Viewer"


class Project(models.Model):
    slug = models.SlugField(max_length=80, unique=True)
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="owned_projects"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    project = models.ForeignKey(
        "lifecycle_app.Project", on_delete=models.CASCADE, related_name="memberships"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=10, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="one_membership_per_user")
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.project} ({self.role})"

    @property
    def can_write(self) -> bool:
        return self.role in (Role.OWNER, Role.EDITOR)

    @property
    def can_manage(self) -> bool:
        """Members, share links and deleting the project are the owners' alone."""
        return self.role == Role.OWNER


class StageKey(models.TextChoices):
    SCOPE = "scope", "Scope"
    SELECT = "select", "Select"
    ADAPT = "adapt", "Adapt and align"
    INTEGRATE = "integrate", "Application integration"


class StepStatus(models.TextChoices):
    NOT_STARTED = "not_started", "Not started"
    IN_PROGRESS = "in_progress", "In progress"
    COMPLETE = "complete", "Complete"


class Stage(models.Model):
    """One lifecycle stage of a project.

    `steps` maps a step slug to {"status": StepStatus, "answers": {...}, "updated_at": iso}.
    Answers are stored only after their form validated.
    """

    project = models.ForeignKey(
        "lifecycle_app.Project", on_delete=models.CASCADE, related_name="stages"
    )
    key = models.CharField(max_length=12, choices=StageKey.choices)
    steps = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "key"], name="one_stage_per_key")]

    def __str__(self) -> str:
        return f"{self.project} / {self.get_key_display()}"

    def step(self, slug: str) -> dict[str, Any]:
        return dict(self.steps.get(slug) or {})


class ActivityVerb(models.TextChoices):
    PROJECT_CREATED = "project_created", "Project created"
    STEP_SAVED = "step_saved", "Step saved"
    DATASET_UPLOADED = "dataset_uploaded", "Dataset uploaded"
    DATASET_RENAMED = "dataset_renamed", "Dataset renamed"
    DATASET_DELETED = "dataset_deleted", "Dataset deleted"
    JOB_STARTED = "job_started", "Job started"
    JOB_CANCELLED = "job_cancelled", "Job cancelled"
    JOB_FINISHED = "job_finished", "Job finished"
    MEMBER_ADDED = "member_added", "Member added"
    MEMBER_ROLE_CHANGED = "member_role_changed", "Member role changed"
    MEMBER_REMOVED = "member_removed", "Member removed"
    MEMBER_LEFT = "member_left", "Member left"
    SHARE_CREATED = "share_created", "Share link created"
    SHARE_REVOKED = "share_revoked", "Share link revoked"
    TEMPLATE_SAVED = "template_saved", "Prompt template saved"
    BEST_TRIAL = "best_trial", "Best prompt trial chosen"
    FEEDBACK_ROUND = "feedback_round", "Rating round started"
    PREFERENCES_SAVED = "preferences_saved", "Preference set saved"
    VARIANT_DEPLOYED = "variant_deployed", "Model deployed"
    TOKEN_CREATED = "token_created", "API token created"
    TOKEN_REVOKED = "token_revoked", "API token revoked"


class Activity(models.Model):
    """One line of a project's activity feed: who did what, and when.

    `description` is written at the time (past tense, without the actor), so the feed
    still reads right after the dataset, job or member it names is gone. `actor` is
    empty for what the system did on its own (a job finishing on a worker).
    """

    project = models.ForeignKey(
        "lifecycle_app.Project", on_delete=models.CASCADE, related_name="activities"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    verb = models.CharField(max_length=24, choices=ActivityVerb.choices)
    description = models.CharField(max_length=300)
    job = models.ForeignKey(
        "lifecycle_app.Job", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["project", "-created_at"], name="activity_project_recent")]
        verbose_name_plural = "activities"

    def __str__(self) -> str:
        return f"{self.get_verb_display()} in {self.project}"
