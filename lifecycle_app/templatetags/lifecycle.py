from __future__ import annotations

from django import template
from django.urls import NoReverseMatch, reverse

from lifecycle_app.common.labels import versioned_name

register = template.Library()


@register.filter
def params(value: int | None) -> str:
    """134515008 -> '134.5M'."""
    if value is None:
        return "—"
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if value >= scale:
            return f"{value / scale:.1f}{suffix}"
    return str(value)


@register.filter
def seconds(value: float | None) -> str:
    if not isinstance(value, int | float):
        return "—"
    if value < 60:
        return f"{value:.1f} s"
    minutes, secs = divmod(int(value), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


STEP_LABELS = {
    "not_started": "Not started",
    "in_progress": "In progress",
    "complete": "Complete",
    "planned": "Coming later",
}


@register.filter
def step_label(status: str) -> str:
    return STEP_LABELS.get(status, status)


@register.filter
def get_item(mapping: dict[str, object], key: str) -> object:
    return mapping.get(key) if mapping else None


@register.filter
def words(value: str) -> str:
    """'optimizer_states' -> 'Optimizer states'."""
    return value.replace("_", " ").capitalize()


@register.filter
def overflow_text(report: object, rows: int) -> str:
    """An OverflowReport said in a sentence."""
    describe = getattr(report, "describe", None)
    return str(describe(rows)) if describe else ""


@register.filter
def score(value: object) -> str:
    """0.41234 -> '0.412'; missing -> '—'."""
    if isinstance(value, int | float):
        return f"{value:.3f}"
    return "—"


@register.filter
def change(value: object) -> str:
    """An absolute change with its sign: 0.0123 -> '+0.012'; missing -> ''."""
    if isinstance(value, int | float):
        return f"{value:+.3f}"
    return ""


@register.filter
def relative(value: object) -> str:
    """A relative change as a signed percentage: 0.1234 -> '+12.3%'; missing -> ''."""
    if isinstance(value, int | float):
        return f"{100 * value:+.1f}%"
    return ""


@register.filter
def scores_get(result: object, key: str) -> object:
    """A job result's aggregate score `key`, or None."""
    if isinstance(result, dict):
        return (result.get("scores") or {}).get(key)
    return None


# A member page's URL name -> the read-only share page that shows the same thing.
SHARE_URL_NAMES = {
    "project_detail": "share_project",
    "wizard_step": "share_step",
    "project_jobs": "share_jobs",
    "job_detail": "share_job",
    "job_status": "share_job_status",
    "scorecard": "share_scorecard",
    "evaluation_detail": "share_evaluation",
    "evaluation_compare": "share_evaluation_compare",
    "trial_list": "share_trial_list",
    "trial_detail": "share_trial_detail",
    "trial_compare": "share_trial_compare",
    "finetune_detail": "share_finetune_detail",
    "align_run_detail": "share_align_run",
}


@register.simple_tag(takes_context=True)
def project_url(context: template.Context, name: str, *args: object) -> str:
    """A URL inside the current project: `{% project_url 'job_detail' job.id %}`.

    On a member's page this is reverse(name, slug, *args). On a share page (`share` in
    the context) it is the link's /s/ counterpart, so a share visitor never gets a link
    to a page that would ask them to log in. A page with no read-only counterpart raises:
    the template must leave that link out on share pages ({% if not share %}).
    """
    share = context.get("share")
    if share is None:
        return reverse(name, args=[context["project"].slug, *args])
    share_name = SHARE_URL_NAMES.get(name)
    if share_name is None:
        raise NoReverseMatch(f"'{name}' has no read-only share page; hide it when `share` is set")
    return reverse(share_name, args=[share.token, *args])


@register.filter
def intcomma_plain(value: int | None) -> str:
    """460800 -> '460,800' (without django.contrib.humanize)."""
    return "—" if value is None else f"{int(value):,}"


@register.filter
def percent(share: float | None) -> str:
    """0.003425 -> '0.34%'; 0.5 -> '50%'."""
    if share is None:
        return "—"
    value = 100 * float(share)
    return f"{value:.2f}%" if value < 10 else f"{value:.0f}%"


@register.filter
def score_for(scores: list[dict[str, object]], key: str) -> dict[str, object] | None:
    """The trade-off row's entry for one metric key, or None."""
    return next((s for s in scores or [] if s.get("key") == key), None)


@register.filter
def reduction(ratio: float | None) -> str:
    """How much smaller: 0.27 -> '73%'."""
    if ratio is None:
        return ""
    return f"{(1 - ratio) * 100:.0f}%"


@register.filter
def versioned(name: str | None, version: object) -> str:
    """A prompt template's name and version, once (see common.labels.versioned_name)."""
    return versioned_name(name, version)
