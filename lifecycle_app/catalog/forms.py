"""Adding a model to the catalog from a local folder or a cached Hugging Face id."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from django import forms

from lifecycle_app.catalog.models import CatalogModel

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?$")


def _config_problem(config_path: Path, shown: str) -> str | None:
    """What is wrong with a model's config.json, read as plain JSON (no transformers here)."""
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        return f"{shown} could not be read: {exc}."
    except json.JSONDecodeError as exc:
        return f"{shown}/config.json is not valid JSON (line {exc.lineno}: {exc.msg})."
    if not isinstance(config, dict) or not isinstance(config.get("model_type"), str):
        return f"{shown}/config.json has no model_type, so its architecture is unknown."
    if config.get("auto_map"):
        return (
            f"{shown} needs custom code from its authors (auto_map in config.json); "
            "Lifecycle Studio keeps trust_remote_code off, so it cannot be added."
        )
    return None


class AddModelForm(forms.Form):
    source = forms.ChoiceField(
        choices=[
            ("local", "A folder on this machine"),
            ("hub", "A Hugging Face id already cached here"),
        ]
    )
    location = forms.CharField(
        label="Folder or id",
        max_length=500,
        help_text="e.g. /data/models/my-llama or HuggingFaceTB/SmolLM2-360M-Instruct",
    )
    name = forms.CharField(
        max_length=120, required=False, help_text="Defaults to the folder or id."
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        source, location = cleaned.get("source"), (cleaned.get("location") or "").strip()
        if not source or not location:
            return cleaned
        if source == "local":
            path = Path(location).expanduser()
            if not path.exists():
                self.add_error("location", f"There is no folder at {location}.")
            elif not path.is_dir():
                self.add_error(
                    "location", f"{location} is a file; give the folder that holds config.json."
                )
            elif not (path / "config.json").is_file():
                self.add_error(
                    "location",
                    f"{location} has no config.json, so it is not a Hugging Face model folder.",
                )
            elif problem := _config_problem(path / "config.json", location):
                self.add_error("location", problem)
            location = str(path.resolve())
        else:
            from huggingface_hub import try_to_load_from_cache

            if not HUB_ID.match(location):
                self.add_error("location", f"'{location}' is not a Hugging Face id (owner/name).")
                return cleaned
            cached = try_to_load_from_cache(location, "config.json")
            if not isinstance(cached, str):
                self.add_error(
                    "location",
                    f"The model '{location}' is not on this machine, and this machine cannot "
                    "download models (no model hub access). Copy its folder here and add it "
                    "as a local folder.",
                )
            elif problem := _config_problem(Path(cached), location):
                self.add_error("location", problem)
        cleaned["location"] = location
        if not self.errors:
            existing = (
                CatalogModel.objects.catalog().filter(source=source, location=location).first()
            )
            if existing:
                self.add_error(
                    "location", f"This model is already in the catalog as {existing.name}."
                )
        return cleaned
