"""Short labels shown in several places (pages, form choices, the admin)."""

from __future__ import annotations


def versioned_name(name: str | None, version: object) -> str:
    """A prompt template's name and version, said once: ("Summarize", 1) -> "Summarize v1";
    a name that already ends in its version ("Summarize v1") is not given it twice."""
    text = str(name or "").strip() or "Template"
    suffix = f"v{version}"
    if text.lower() == suffix.lower() or text.lower().endswith(" " + suffix.lower()):
        return text
    return f"{text} {suffix}"
