"""Alignment records: rating rounds, their items and ratings, preference sets and pairs."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Choice(models.TextChoices):
    A = "a", "A is better"
    B = "b", "B is better"
    TIE = "tie", "Tie"
    BOTH_BAD = "both_bad", "Both bad"


class FeedbackRound(models.Model):
    """Teammates compare two completions per row: the outputs of two prompt trials (two
    candidates, or two seeded samples of one) on the same rows of the same split."""

    project = models.ForeignKey(
        "lifecycle_app.Project", on_delete=models.CASCADE, related_name="feedback_rounds"
    )
    name = models.CharField(max_length=120)
    trial_a = models.ForeignKey(
        "lifecycle_app.Job", on_delete=models.SET_NULL, null=True, related_name="+"
    )
    trial_b = models.ForeignKey(
        "lifecycle_app.Job", on_delete=models.SET_NULL, null=True, related_name="+"
    )
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

    round = models.ForeignKey(
        "lifecycle_app.FeedbackRound", on_delete=models.CASCADE, related_name="items"
    )
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

    item = models.ForeignKey(
        "lifecycle_app.FeedbackItem", on_delete=models.CASCADE, related_name="ratings"
    )
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

    project = models.ForeignKey(
        "lifecycle_app.Project", on_delete=models.CASCADE, related_name="preference_sets"
    )
    name = models.CharField(max_length=120)
    source = models.CharField(max_length=10)  # "ratings" | "import"
    round = models.ForeignKey(
        "lifecycle_app.FeedbackRound",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="sets",
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
        "lifecycle_app.PreferenceSet", on_delete=models.CASCADE, related_name="pairs"
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
