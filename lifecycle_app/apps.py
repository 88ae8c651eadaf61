from __future__ import annotations

from django.apps import AppConfig


class LifecycleAppConfig(AppConfig):
    name = "lifecycle_app"
    verbose_name = "Lifecycle Studio"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from lifecycle_app.common import refusals

        refusals.install()
