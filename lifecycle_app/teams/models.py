"""Read-only share links."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class ShareLink(models.Model):
    """A read-only link to one project for people without an account.

    The token is the capability: anyone holding it sees the project's pages under
    /s/<token>/ (never a /p/ page, never a download) until it expires or is revoked.
    It is kept in clear so owners can copy the link again later.
    """

    project = models.ForeignKey(
        "lifecycle_app.Project", on_delete=models.CASCADE, related_name="share_links"
    )
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
