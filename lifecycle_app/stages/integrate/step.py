"""The application step's web side: the checklist, beside what the records show is set up
(the knowledge index, app evaluations, versions' reasoning aids and fallback rules, the
serving log)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from lifecycle_app.common.forms import StepForm
from lifecycle_app.projects.handlers import StepHandler
from lifecycle_app.projects.models import Project, Stage
from lifecycle_app.stages.integrate.api.selectors import serving_stats
from lifecycle_app.stages.integrate.app.selectors import IntegrateStatus, integrate_status
from lifecycle_app.stages.integrate.forms import IntegrationChecklistForm
from lifecycle_app.stages.integrate.items import CHECKLIST_STATUSES, checklist_initial


def evidence(status: IntegrateStatus, stats: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per checklist item: what is really set up ("ok": True when the records show it) and
    a sentence saying so."""
    job = status.app_evaluated
    retrieval_text = (
        f"Knowledge index: {status.index_note}."
        if status.index_ready
        else "No knowledge index yet."
    )
    retrieval_text += (
        f" Measured by app evaluation #{job.id}." if job else " No app evaluation has run yet."
    )
    if status.versions:
        reasoning_text = (
            "Versions by reasoning aid: "
            + ", ".join(f"{label} {n}" for label, n in sorted(status.reasoning_versions.items()))
            + "."
        )
    else:
        reasoning_text = "No application version yet, so no reasoning aid is chosen."
    total = (stats.get("total") or {}).get("requests", 0)
    fallback_text = (
        "A fallback rule is set (empty retrieval or a score threshold)."
        if status.fallback_rule
        else "No version has a fallback rule (it needs retrieval on)."
    )
    fallback_text += f" {status.fallback_waiting} question{'s' if status.fallback_waiting != 1 else ''} waiting for review."
    return {
        "retrieval": {"ok": status.index_ready and job is not None, "text": retrieval_text},
        "reasoning": {"ok": status.versions > 0, "text": reasoning_text},
        "monitoring": {
            "ok": total > 0,
            "text": f"{total} API request{'s' if total != 1 else ''} logged in the last {stats.get('window_days', 7)} days.",
        },
        "fallback": {"ok": status.fallback_rule, "text": fallback_text},
        "infrastructure": {"ok": None, "text": ""},
    }


class ChecklistStep(StepHandler):
    form_class = IntegrationChecklistForm
    template = "integrate/step.html"

    def initial(
        self, *, project: Project, answers: dict[str, Any], stages: dict[str, Stage]
    ) -> dict[str, Any]:
        return checklist_initial(answers)

    def extra(
        self,
        *,
        request: HttpRequest | None,
        project: Project,
        stages: dict[str, Stage],
        form: StepForm | None,
    ) -> dict[str, Any]:
        status = integrate_status(project=project)
        stats = serving_stats(project)
        return {
            "checklist_statuses": CHECKLIST_STATUSES,
            "integrate": status,
            "serving_stats": stats,
            "evidence": evidence(status, stats),
        }
