"""When the Scope step counts as done. A leaf: imports nothing from the app, so the step
declaration (lifecycle_app/projects/steps.py) can use it."""

from __future__ import annotations

from typing import Any

MIN_EXAMPLES = 3
MAX_EXAMPLES = 20


def use_case_complete(answers: dict[str, Any]) -> bool:
    return (
        all(
            answers.get(k) not in (None, "", [])
            for k in ("task_type", "use_case", "success_metric")
        )
        and len(answers.get("examples", [])) >= MIN_EXAMPLES
    )
