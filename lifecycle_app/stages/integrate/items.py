"""The integration checklist: its items, statuses and completion rule. A leaf: imports nothing
from the app, so the step declaration (lifecycle_app/projects/steps.py) can use it."""

from __future__ import annotations

from typing import Any

CHECKLIST_ITEMS: tuple[tuple[str, str, str], ...] = (
    (
        "retrieval",
        "Retrieval over documents",
        "Does the model need your documents at answer time (retrieval-augmented generation)?",
    ),
    (
        "reasoning",
        "Reasoning aids",
        "Chain-of-thought prompts, tools or program-aided steps for multi-step questions.",
    ),
    (
        "monitoring",
        "Monitoring",
        "Logging prompts and answers, quality checks on live traffic, drift and cost alerts.",
    ),
    (
        "fallback",
        "Human fallback",
        "Who takes over when the model is unsure, wrong or the user asks for a person.",
    ),
    (
        "infrastructure",
        "Infrastructure",
        "Where it runs, how it scales, latency and cost budgets, the serving worker.",
    ),
)
CHECKLIST_STATUSES = [
    ("open", "To decide"),
    ("not_needed", "Not needed"),
    ("planned", "Planned"),
    ("in_progress", "In progress"),
    ("done", "Done"),
]


def checklist_initial(answers: dict[str, Any]) -> dict[str, Any]:
    initial: dict[str, Any] = {}
    for key, item in (answers.get("items") or {}).items():
        initial[f"{key}_status"] = item.get("status", "open")
        initial[f"{key}_notes"] = item.get("notes", "")
    return initial


def checklist_complete(answers: dict[str, Any]) -> bool:
    items = answers.get("items") or {}
    return len(items) == len(CHECKLIST_ITEMS) and all(
        i.get("status") != "open" for i in items.values()
    )


def checklist_view(answers: dict[str, Any]) -> list[dict[str, str]]:
    """The saved checklist as rows for the project page."""
    labels = dict(CHECKLIST_STATUSES)
    items = answers.get("items") or {}
    return [
        {
            "key": key,
            "label": label,
            "status": (items.get(key) or {}).get("status", "open"),
            "status_label": labels[(items.get(key) or {}).get("status", "open")],
            "notes": (items.get(key) or {}).get("notes", ""),
        }
        for key, label, _ in CHECKLIST_ITEMS
    ]
