"""Prompt reads: templates and their versions, trials, their rows, the best trial."""

from __future__ import annotations

from django.db.models import Count, QuerySet
from django.http import Http404

from lifecycle_app.common.labels import versioned_name
from lifecycle_app.jobs.models import Job, JobKind, JobStatus
from lifecycle_app.projects.models import Project, Stage
from lifecycle_app.projects.selectors import MAX_ID, step_answers
from lifecycle_app.projects.steps import StepSlug
from lifecycle_app.stages.prompt.baseline import annotate_zero_shot_change
from lifecycle_app.stages.prompt.models import PromptTemplate, TrialExample


def template_list(*, project: Project) -> list[PromptTemplate]:
    """Every version, newest version of each name first."""
    return list(PromptTemplate.objects.filter(project=project).order_by("name", "-version"))


def template_latest(*, project: Project) -> list[PromptTemplate]:
    """The newest version of each template, with `versions` = how many it has."""
    latest: dict[str, PromptTemplate] = {}
    counts: dict[str, int] = {}
    for t in template_list(project=project):
        latest.setdefault(t.name, t)
        counts[t.name] = counts.get(t.name, 0) + 1
    for name, t in latest.items():
        t.versions = counts[name]  # type: ignore[attr-defined]
    return list(latest.values())


def template_get(*, project: Project, template_id: int) -> PromptTemplate:
    if not 0 < template_id <= MAX_ID:
        raise Http404("No such template.")
    template = PromptTemplate.objects.filter(project=project, id=template_id).first()
    if template is None:
        raise Http404("No such template.")
    return template


def template_versions(*, template: PromptTemplate) -> list[PromptTemplate]:
    return list(
        PromptTemplate.objects.filter(project_id=template.project_id, name=template.name)
        .annotate(trials=Count("jobs"))
        .order_by("-version")
    )


def _trials(project: Project) -> QuerySet[Job]:
    return Job.objects.select_related(
        "base_model", "dataset", "prompt_template", "created_by"
    ).filter(project=project, kind=JobKind.TRIAL)


TRIAL_SORTS = ("created", "tokens_per_second", "shots", "rows")


def trial_list(*, project: Project, sort: str = "created", descending: bool = True) -> list[Job]:
    """Every trial of the project, sorted by a metric, speed, shots, rows or date.

    Trials without the sorted-by value (another task's metric, or none yet) go last.
    """
    trials = list(_trials(project).order_by("-created_at", "-id")[:500])

    def value(job: Job) -> float | None:
        result = job.result or {}
        if sort == "tokens_per_second":
            return result.get("tokens_per_second")
        if sort == "shots":
            return float(job.params.get("shots", 0))
        if sort == "rows":
            return result.get("rows_done")
        return (result.get("scores") or {}).get(sort)

    annotate_zero_shot_change(project_id=project.id, trials=trials)
    if sort == "created":
        return trials if descending else trials[::-1]
    present = [j for j in trials if value(j) is not None]
    missing = [j for j in trials if value(j) is None]
    present.sort(key=lambda j: value(j) or 0.0, reverse=descending)
    return present + missing


def trial_metric_keys(trials: list[Job]) -> list[str]:
    keys: list[str] = []
    for job in trials:
        for key in (job.result or {}).get("scores") or {}:
            if key not in keys:
                keys.append(key)
    return keys


def trial_get(*, project: Project, job_id: int) -> Job:
    if not 0 < job_id <= MAX_ID:
        raise Http404("No such trial.")
    job = _trials(project).filter(id=job_id).first()
    if job is None:
        raise Http404("No such trial.")
    return job


def trial_examples(*, job: Job) -> list[TrialExample]:
    return list(TrialExample.objects.filter(job=job).order_by("index"))


def best_trial_id(stages: dict[str, Stage]) -> int | None:
    value = step_answers(stages, "adapt", StepSlug.PROMPT).get("best_trial")
    return int(value) if value else None


def trials_by_ids(*, project: Project, ids: list[int]) -> list[Job]:
    wanted = [i for i in ids if 0 < i <= MAX_ID]
    found = {j.id: j for j in _trials(project).filter(id__in=wanted)}
    annotate_zero_shot_change(project_id=project.id, trials=found.values())
    return [found[i] for i in wanted if i in found]


def succeeded_trials(*, project: Project) -> list[Job]:
    return list(_trials(project).filter(status=JobStatus.SUCCEEDED).order_by("-id")[:50])


def trial_label(job: Job, *, with_scores: bool = False) -> str:
    """How a trial is named wherever one is picked: "Trial #12 · model · template v2 ·
    3-shot", with " · sampled, seed 7" for sampled trials and, with `with_scores`, its
    scores in brackets."""
    params = job.params or {}
    template = params.get("template") or {}
    name = template.get("name") or (job.prompt_template.name if job.prompt_template else "?")
    version = template.get("version") or (
        job.prompt_template.version if job.prompt_template else "?"
    )
    model = job.base_model.name if job.base_model else "deleted model"
    sampling = f" · sampled, seed {params.get('seed')}" if params.get("do_sample") else ""
    label = f"Trial #{job.id} · {model} · {versioned_name(name, version)} · {params.get('shots', 0)}-shot{sampling}"
    scores = ", ".join(f"{k} {v:.3f}" for k, v in ((job.result or {}).get("scores") or {}).items())
    return label + (f" ({scores})" if with_scores and scores else "")
