from __future__ import annotations

from pathlib import Path
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
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
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

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="stages")
    key = models.CharField(max_length=12, choices=StageKey.choices)
    steps = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "key"], name="one_stage_per_key")]

    def __str__(self) -> str:
        return f"{self.project} / {self.get_key_display()}"

    def step(self, slug: str) -> dict[str, Any]:
        return dict(self.steps.get(slug) or {})


class ModelSource(models.TextChoices):
    BUNDLED = "bundled", "Bundled with Lifecycle Studio"
    TINY = "tiny", "Tiny local test model"
    LOCAL = "local", "Local folder"
    HUB = "hub", "Hugging Face id (cached on this machine)"


class BaseModelQuerySet(models.QuerySet["BaseModel"]):
    def catalog(self) -> BaseModelQuerySet:
        """The shared catalog: bundled, test and added models (no project's candidates)."""
        return self.filter(project__isnull=True)

    def for_project(self, project: Any) -> BaseModelQuerySet:
        """What a project can run: the catalog and its own fine-tuned candidates."""
        return self.filter(models.Q(project__isnull=True) | models.Q(project=project))


class BaseModel(models.Model):
    """A catalog entry. Shape figures come from the model's config, never typed in."""

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

    objects = BaseModelQuerySet.as_manager()

    class Meta:
        ordering = ["is_test_model", "project_id", "n_params", "name"]

    def __str__(self) -> str:
        return self.name


class Dataset(models.Model):
    """An uploaded, validated and split dataset.

    The original file and its cleaned JSON Lines copy (one {"input", "target", "split",
    "line"} object per valid row) live under settings.DATASETS_DIR/<project id>/ with
    generated names. The split is fixed at creation, so every later job reads the same
    examples.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="datasets")
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


class PromptTemplate(models.Model):
    """One version of a prompt template (see workers/ml/prompts.py for the placeholders).

    Versions are immutable: editing writes version + 1 under the same name, so a trial
    always points at the exact text it used.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="templates")
    name = models.CharField(max_length=80)
    version = models.PositiveIntegerField(default=1)
    instruction = models.TextField(blank=True)
    example_format = models.TextField(blank=True)
    body = models.TextField()
    use_chat_template = models.BooleanField(default=True)
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
        return f"{self.name} v{self.version}"


class JobKind(models.TextChoices):
    GENERATE = "generate", "Generate"
    PROFILE = "profile", "Dataset profile"
    REGISTER_MODEL = "register_model", "Add model"
    TRIAL = "trial", "Prompt trial"
    FINETUNE = "finetune", "Fine-tuning"
    EVALUATE = "evaluate", "Evaluation"
    ALIGN = "align", "Alignment (DPO)"
    EXPORT = "export", "Export"


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING)


class Job(models.Model):
    """The source of truth for a unit of background work (see workers/tasks.py)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="jobs")
    kind = models.CharField(max_length=20, choices=JobKind.choices)
    status = models.CharField(
        max_length=10, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True
    )
    base_model = models.ForeignKey(
        BaseModel, on_delete=models.PROTECT, null=True, blank=True, related_name="jobs"
    )
    dataset = models.ForeignKey(
        "Dataset", on_delete=models.SET_NULL, null=True, blank=True, related_name="jobs"
    )
    prompt_template = models.ForeignKey(
        PromptTemplate, on_delete=models.PROTECT, null=True, blank=True, related_name="jobs"
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
    attempt = models.PositiveIntegerField(default=0)
    worker = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="jobs"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
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


class GenerationOutput(models.Model):
    """One generated example of a generation job (one per prompt)."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="outputs")
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

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="examples")
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


class ShareLink(models.Model):
    """A read-only link to one project for people without an account.

    The token is the capability: anyone holding it sees the project's pages under
    /s/<token>/ (never a /p/ page, never a download) until it expires or is revoked.
    It is kept in clear so owners can copy the link again later.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="share_links")
    token = models.CharField(max_length=64, unique=True)
    label = models.CharField(max_length=120, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"share link {self.pk} of {self.project}"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def is_expired(self) -> bool:
        from django.utils import timezone

        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def is_active(self) -> bool:
        return not self.is_revoked and not self.is_expired


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

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="activities")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    verb = models.CharField(max_length=24, choices=ActivityVerb.choices)
    description = models.CharField(max_length=300)
    job = models.ForeignKey(Job, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["project", "-created_at"], name="activity_project_recent")]
        verbose_name_plural = "activities"

    def __str__(self) -> str:
        return f"{self.get_verb_display()} in {self.project}"


class MetricPoint(models.Model):
    """One value of one curve of a job (train loss, validation loss, learning rate, ...)
    at one step. A resumed job writes a step again: (job, name, step) is unique."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="metric_points")
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


class Artifact(models.Model):
    """A file set a job produced (an adapter or a model), with its size and checksums."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="artifacts")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="artifacts")
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

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="eval_candidates")
    position = models.PositiveIntegerField()
    label = models.CharField(max_length=200)
    # "base" | "trial" | "finetuned" | "aligned" | "exported"
    kind = models.CharField(max_length=20)
    base_model = models.ForeignKey(
        BaseModel, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    source_job = models.ForeignKey(
        Job, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    spec = models.JSONField(default=dict)
    status = models.CharField(
        max_length=12, choices=CandidateStatus.choices, default=CandidateStatus.PENDING
    )
    reason = models.TextField(blank=True)
    # {"rouge1": ..., "perplexity": ...}: the set's figures (see
    # workers.ml.evaluation.metrics.score_eval)
    scores = models.JSONField(default=dict, blank=True)
    # The general-ability set: {"answer_match", "rougeL", "perplexity"}
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
        EvaluationCandidate, on_delete=models.CASCADE, related_name="examples"
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


class Choice(models.TextChoices):
    A = "a", "A is better"
    B = "b", "B is better"
    TIE = "tie", "Tie"
    BOTH_BAD = "both_bad", "Both bad"


class FeedbackRound(models.Model):
    """Teammates compare two completions per row: the outputs of two prompt trials (two
    candidates, or two seeded samples of one) on the same rows of the same split."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="feedback_rounds")
    name = models.CharField(max_length=120)
    trial_a = models.ForeignKey(Job, on_delete=models.SET_NULL, null=True, related_name="+")
    trial_b = models.ForeignKey(Job, on_delete=models.SET_NULL, null=True, related_name="+")
    label_a = models.CharField(max_length=200)
    label_b = models.CharField(max_length=200)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name


class FeedbackItem(models.Model):
    """One row to rate: the exact prompt both completions answered, and the two."""

    round = models.ForeignKey(FeedbackRound, on_delete=models.CASCADE, related_name="items")
    index = models.PositiveIntegerField()
    line = models.PositiveIntegerField(help_text="line of the row in the dataset file")
    input = models.TextField()
    prompt = models.TextField()
    completion_a = models.TextField()
    completion_b = models.TextField()

    class Meta:
        ordering = ["round", "index"]
        constraints = [
            models.UniqueConstraint(fields=["round", "index"], name="one_item_per_index")
        ]

    def __str__(self) -> str:
        return f"item {self.index} of round {self.round_id}"


class Rating(models.Model):
    """One rater's verdict on one item (a rater may change it; one row per rater)."""

    item = models.ForeignKey(FeedbackItem, on_delete=models.CASCADE, related_name="ratings")
    rater = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    choice = models.CharField(max_length=10, choices=Choice.choices)
    comment = models.TextField(blank=True, max_length=2000)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["item", "rater"]
        constraints = [
            models.UniqueConstraint(fields=["item", "rater"], name="one_rating_per_rater")
        ]

    def __str__(self) -> str:
        return f"{self.rater_id} on {self.item_id}: {self.choice}"


class PreferenceSet(models.Model):
    """Preference pairs (prompt, chosen, rejected): built from a round's ratings or
    imported from JSON Lines. Alignment jobs train on them."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="preference_sets")
    name = models.CharField(max_length=120)
    source = models.CharField(max_length=10)  # "ratings" | "import"
    round = models.ForeignKey(
        FeedbackRound, on_delete=models.SET_NULL, null=True, blank=True, related_name="sets"
    )
    note = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name


class PreferencePair(models.Model):
    preference_set = models.ForeignKey(
        PreferenceSet, on_delete=models.CASCADE, related_name="pairs"
    )
    index = models.PositiveIntegerField()
    prompt = models.TextField()
    chosen = models.TextField()
    rejected = models.TextField()

    class Meta:
        ordering = ["preference_set", "index"]
        constraints = [
            models.UniqueConstraint(fields=["preference_set", "index"], name="one_pair_per_index")
        ]

    def __str__(self) -> str:
        return f"pair {self.index} of set {self.preference_set_id}"


class VariantKind(models.TextChoices):
    SAFETENSORS = "safetensors", "Merged safetensors (float32)"
    INT8 = "int8", "int8 dynamic quantization (CPU)"
    ONNX = "onnx", "ONNX graph"


class ModelVariant(models.Model):
    """An optimized or exported form of a project's model, made by one export job.

    `measurements` holds what the job measured on its worker, the variant and its parent
    side by side under the same conditions: {"variant": {...}, "parent": {...},
    "settings": {...}} with size_bytes, load_s, tokens_per_s, latency_ms and scores.
    At most one variant per project is deployed (it answers the project's API).
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="variants")
    job = models.OneToOneField(Job, on_delete=models.CASCADE, related_name="variant")
    kind = models.CharField(max_length=12, choices=VariantKind.choices)
    parent = models.ForeignKey(BaseModel, on_delete=models.PROTECT, related_name="variants_made")
    # The candidate row for a loadable variant (safetensors, int8); None for ONNX.
    candidate = models.OneToOneField(
        BaseModel, on_delete=models.SET_NULL, null=True, blank=True, related_name="variant"
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
        return self.kind in (VariantKind.SAFETENSORS, VariantKind.INT8)


class ApiToken(models.Model):
    """A per-project API token. Only its SHA-256 is stored: the token is shown once, when
    it is created. `prefix` (its first characters) lets owners tell tokens apart."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="api_tokens")
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
