"""Check the artifact store at start-up and create its bucket when it is missing (a new
development S3 server starts empty). Exits non-zero, naming the store, when it is
unreachable, so a host that cannot reach the store does not start serving."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from lifecycle_app.storage import StoreError, store


class Command(BaseCommand):
    help = "Check the artifact store (LIFECYCLE_STORAGE_URL); create its S3 bucket if missing."

    def handle(self, *args: Any, **options: Any) -> None:
        target = store()
        try:
            ensure = getattr(target, "ensure_bucket", None)
            if ensure is not None:
                ensure()
            target.list("")[:1]
        except StoreError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"Artifact store: {target.url}")
