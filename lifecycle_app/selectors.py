"""Reads. Every project-scoped read goes through `project_get_for_user` first (or, on the
read-only share pages, `share_link_get_active`)."""

from __future__ import annotations

import re
from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q, QuerySet
from django.http import Http404
from django.utils import timezone

from lifecycle_app.models import (
    ACTIVE_STATUSES,
    Activity,
    ApiToken,
    BaseModel,
    Dataset,
    EvaluationCandidate,
    EvaluationExample,
    FeedbackItem,
    FeedbackRound,
    Job,
    JobKind,
    JobStatus,
    Membership,
    MetricPoint,
    ModelVariant,
    PreferenceSet,
    Project,
    PromptTemplate,
    Rating,
    Role,
    ShareLink,
    Stage,
    TrialExample,
)

AnyUser = User | AnonymousUser


def project_get_for_user(
    *, user: AnyUser, slug: str, write: bool = False, manage: bool = False
) -> tuple[Project, Membership]:
    """The project and the user's membership; 404 for anyone outside the project.

    `write`: editors and owners (run jobs, edit stages, upload data). `manage`: owners only
    (members, share links, deleting the project). A member below the role asked for gets
    403: they can see the project exists.
    """
    if not isinstance(user, User):
        raise Http404("No such project.")
    membership = (
        Membership.objects.select_related("project", "project__owner")
        .filter(project__slug=slug, user=user)
        .first()
    )
    if membership is None:
        raise Http404("No such project.")
    if manage and not membership.can_manage:
        raise PermissionDenied("Only the project's owners can do this.")
    if write and not membership.can_write:
        raise PermissionDenied("Viewers cannot change this project.")
    return membership.project, membership


# secrets.token_urlsafe(32) gives 43 characters; anything unlike a token is refused unread.
_SHARE_TOKEN = re.compile(r"[A-Za-z0-9_-]{20,64}")


def share_links_active_q() -> Q:
    """The links that still open their project (not revoked, not expired)."""
    return Q(revoked_at__isnull=True) & (
        Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now())
    )


def share_link_get_active(*, token: str) -> ShareLink:
    """The share link with this token and its project; 404 when unknown, revoked or expired.

    The access helper of every /s/ page: a share link opens that one project's read-only
    pages and nothing else.
    """
    if not _SHARE_TOKEN.fullmatch(token):
        raise Http404("No such page.")
    link = (
        ShareLink.objects.select_related("project", "created_by")
        .filter(share_links_active_q(), token=token)
        .first()
    )
    if link is None:
        raise Http404("No such page.")
    return link


def share_link_list(*, project: Project, limit: int = 20) -> list[ShareLink]:
    """The latest links, those that still open the project first."""
    links = list(ShareLink.objects.filter(project=project).select_related("created_by")[:limit])
    return sorted(links, key=lambda link: not link.is_active)  # stable: newest first within


def share_link_get(*, project: Project, share_id: int) -> ShareLink:
    if not 0 < share_id <= MAX_ID:
        raise Http404("No such share link.")
    link = ShareLink.objects.filter(project=project, id=share_id).first()
    if link is None:
        raise Http404("No such share link.")
    return link


def membership_list(*, project: Project) -> list[Membership]:
    """Owners first, then editors, then viewers; by name within a role."""
    order = {Role.OWNER: 0, Role.EDITOR: 1, Role.VIEWER: 2}
    members = list(Membership.objects.filter(project=project).select_related("user"))
    return sorted(members, key=lambda m: (order.get(Role(m.role), 3), m.user.username.lower()))


def membership_get(*, project: Project, member_id: int) -> Membership:
    if not 0 < member_id <= MAX_ID:
        raise Http404("No such member.")
    membership = (
        Membership.objects.select_related("user").filter(project=project, id=member_id).first()
    )
    if membership is None:
        raise Http404("No such member.")
    return membership


def activity_list(*, project: Project, limit: int = 20) -> list[Activity]:
    return list(Activity.objects.filter(project=project).select_related("actor")[:limit])


def project_list_for_user(*, user: User) -> QuerySet[Project]:
    return Project.objects.filter(memberships__user=user).select_related("owner")


def stages_for_project(*, project: Project) -> dict[str, Stage]:
    return {stage.key: stage for stage in project.stages.all()}


MAX_ID = 2**63 - 1  # larger ids in a URL would overflow the database's bigint


def step_answers(stages: dict[str, Stage], stage_key: str, step_slug: str) -> dict[str, Any]:
    """The validated answers of one wizard step ({} when it has none yet)."""
    stage = stages.get(stage_key)
    return dict(stage.step(step_slug).get("answers", {})) if stage else {}


def picked_model_slug(stages: dict[str, Stage]) -> str | None:
    """The model the project chose in Select, if it chose one."""
    return step_answers(stages, "select", "model").get("base_model")


def job_get_for_user(*, project: Project, job_id: int) -> Job:
    if not 0 < job_id <= MAX_ID:
        raise Http404("No such job.")
    job = (
        Job.objects.select_related("created_by", "base_model", "project")
        .filter(project=project, id=job_id)
        .first()
    )
    if job is None:
        raise Http404("No such job.")
    return job


def job_list(
    *,
    user: User | None = None,
    project: Project | None = None,
    status: str | None = None,
    kind: str | None = None,
    limit: int = 200,
) -> list[Job]:
    jobs = Job.objects.select_related("project", "created_by", "base_model")
    if project is not None:
        jobs = jobs.filter(project=project)
    elif user is not None:
        jobs = jobs.filter(project__memberships__user=user)
    else:
        raise ValueError("job_list needs a project or a user")
    if status:
        jobs = jobs.filter(status=status)
    if kind:
        jobs = jobs.filter(kind=kind)
    return list(jobs.order_by("-created_at", "-id")[:limit])


def any_active(jobs: list[Job]) -> bool:
    return any(job.status in ACTIVE_STATUSES for job in jobs)


def catalog_list() -> QuerySet[BaseModel]:
    return BaseModel.objects.catalog()


def latest_job_for_step(*, project: Project, kind: str) -> Job | None:
    return (
        Job.objects.select_related("created_by", "base_model", "project")
        .filter(project=project, kind=kind)
        .order_by("-created_at", "-id")
        .first()
    )


def dataset_list(*, project: Project) -> list[Dataset]:
    return list(Dataset.objects.filter(project=project).select_related("created_by"))


def dataset_get(*, project: Project, dataset_id: int) -> Dataset:
    if not 0 < dataset_id <= MAX_ID:
        raise Http404("No such dataset.")
    dataset = Dataset.objects.filter(project=project, id=dataset_id).first()
    if dataset is None:
        raise Http404("No such dataset.")
    return dataset


def latest_profile_job(*, dataset: Dataset) -> Job | None:
    return (
        Job.objects.select_related("created_by", "base_model", "project")
        .filter(dataset=dataset, kind=JobKind.PROFILE)
        .order_by("-created_at", "-id")
        .first()
    )


BUNDLED_SLUG = "smollm2-135m-instruct"


def profile_model_for(*, project: Project) -> BaseModel | None:
    """The tokenizer to profile with: the project's chosen model, else the bundled one."""
    slug = picked_model_slug(stages_for_project(project=project))
    for candidate in (slug, BUNDLED_SLUG):
        if candidate:
            model = BaseModel.objects.catalog().filter(slug=candidate).first()
            if model is not None:
                return model
    return BaseModel.objects.catalog().order_by("is_test_model", "id").first()


# --- Prompt templates and trials ----------------------------------------------------------


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
    value = step_answers(stages, "adapt", "prompt").get("best_trial")
    return int(value) if value else None


def trials_by_ids(*, project: Project, ids: list[int]) -> list[Job]:
    wanted = [i for i in ids if 0 < i <= MAX_ID]
    found = {j.id: j for j in _trials(project).filter(id__in=wanted)}
    return [found[i] for i in wanted if i in found]


# --- Fine-tuning --------------------------------------------------------------------------


def finetune_get(*, project: Project, job_id: int) -> Job:
    if not 0 < job_id <= MAX_ID:
        raise Http404("No such run.")
    job = (
        Job.objects.select_related("base_model", "dataset", "created_by", "project")
        .filter(project=project, id=job_id, kind__in=(JobKind.FINETUNE, JobKind.ALIGN))
        .first()
    )
    if job is None:
        raise Http404("No such run.")
    return job


def metric_series(*, job: Job) -> dict[str, list[list[float]]]:
    """Each curve of a job as [[step, value], ...] in step order."""
    series: dict[str, list[list[float]]] = {}
    points = MetricPoint.objects.filter(job=job).order_by("name", "step")
    for name, step, value in points.values_list("name", "step", "value"):
        series.setdefault(name, []).append([step, value])
    return series


def candidate_of(*, job: Job) -> BaseModel | None:
    return BaseModel.objects.filter(trained_by_job=job).first()


def finetuned_models(*, project: Project) -> list[BaseModel]:
    """The project's own (fine-tuned) models, newest first."""
    return list(
        BaseModel.objects.filter(project=project)
        .select_related("trained_by_job")
        .order_by("-created_at", "-id")
    )


# --- Evaluation ---------------------------------------------------------------------------


def _evaluations(project: Project) -> QuerySet[Job]:
    return Job.objects.select_related("dataset", "created_by", "project").filter(
        project=project, kind=JobKind.EVALUATE
    )


def evaluation_list(*, project: Project, limit: int = 50) -> list[Job]:
    return list(_evaluations(project).order_by("-created_at", "-id")[:limit])


def evaluation_get(*, project: Project, job_id: int) -> Job:
    if not 0 < job_id <= MAX_ID:
        raise Http404("No such evaluation.")
    job = _evaluations(project).filter(id=job_id).first()
    if job is None:
        raise Http404("No such evaluation.")
    return job


def evaluation_latest(*, project: Project) -> Job | None:
    """The newest evaluation that scored something, else the newest at all."""
    evaluations = _evaluations(project).order_by("-created_at", "-id")
    return evaluations.filter(eval_candidates__status="done").first() or evaluations.first()


def evaluation_candidates(*, job: Job) -> list[EvaluationCandidate]:
    return list(
        EvaluationCandidate.objects.filter(job=job)
        .select_related("base_model", "source_job")
        .order_by("position")
    )


def evaluation_examples(*, candidate: EvaluationCandidate) -> list[EvaluationExample]:
    return list(EvaluationExample.objects.filter(candidate=candidate).order_by("index"))


def evaluation_all_examples(*, job: Job) -> list[EvaluationExample]:
    return list(
        EvaluationExample.objects.filter(candidate__job=job).order_by(
            "candidate__position", "index"
        )
    )


def feedback_rounds(*, project: Project) -> list[FeedbackRound]:
    return list(
        FeedbackRound.objects.filter(project=project).annotate(
            n_items=Count("items", distinct=True),
            n_ratings=Count("items__ratings", distinct=True),
        )
    )


def feedback_round_get(*, project: Project, round_id: int) -> FeedbackRound:
    rnd = (
        FeedbackRound.objects.filter(project=project, id=round_id).first()
        if 0 < round_id <= MAX_ID
        else None
    )
    if rnd is None:
        raise Http404("No such rating round.")
    return rnd


def round_ratings(*, rnd: FeedbackRound) -> list[Rating]:
    return list(Rating.objects.filter(item__round=rnd).select_related("rater"))


def next_item_to_rate(*, rnd: FeedbackRound, user: User) -> FeedbackItem | None:
    """The first item this rater has not rated yet."""
    return (
        FeedbackItem.objects.filter(round=rnd)
        .exclude(ratings__rater=user)
        .order_by("index")
        .first()
    )


def preference_sets(*, project: Project) -> list[PreferenceSet]:
    return list(PreferenceSet.objects.filter(project=project).annotate(n_pairs=Count("pairs")))


def preference_set_get(*, project: Project, set_id: int) -> PreferenceSet:
    pset = (
        PreferenceSet.objects.filter(project=project, id=set_id).first()
        if 0 < set_id <= MAX_ID
        else None
    )
    if pset is None:
        raise Http404("No such preference set.")
    return pset


def succeeded_trials(*, project: Project) -> list[Job]:
    return list(_trials(project).filter(status=JobStatus.SUCCEEDED).order_by("-id")[:50])


# --- optimize and deploy ------------------------------------------------------------------


def variant_get(*, project: Project, variant_id: int) -> ModelVariant:
    variant = (
        ModelVariant.objects.select_related("candidate", "parent", "job")
        .filter(project=project, id=variant_id)
        .first()
    )
    if variant is None:
        raise Http404("No such variant in this project.")
    return variant


def api_token_get(*, project: Project, token_id: int) -> ApiToken:
    token = ApiToken.objects.filter(project=project, id=token_id).first()
    if token is None:
        raise Http404("No such API token in this project.")
    return token


def api_token_list(*, project: Project) -> list[ApiToken]:
    return list(ApiToken.objects.filter(project=project).select_related("created_by")[:50])


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def tradeoff_rows(*, project: Project) -> list[dict[str, Any]]:
    """The trade-off table: each variant beside its parent, measured by its export job on
    the same worker with the same prompts and settings. Changes are variant - parent
    (scores, absolute) or variant / parent (size, speed)."""
    rows = []
    variants = ModelVariant.objects.filter(project=project).select_related(
        "candidate", "parent", "job"
    )
    for v in variants:
        m = v.measurements or {}
        mine, parent = m.get("variant") or {}, m.get("parent") or {}
        scores = mine.get("scores") or {}
        parent_scores = parent.get("scores") or {}
        rows.append(
            {
                "variant": v,
                "settings": m.get("settings") or {},
                "size_mb": (mine.get("size_bytes") or 0) / 2**20,
                "parent_size_mb": (parent.get("size_bytes") or 0) / 2**20,
                "size_ratio": _ratio(mine.get("size_bytes"), parent.get("size_bytes")),
                "load_s": mine.get("load_s"),
                "parent_load_s": parent.get("load_s"),
                "tokens_per_s": mine.get("tokens_per_s"),
                "parent_tokens_per_s": parent.get("tokens_per_s"),
                "speedup": _ratio(mine.get("tokens_per_s"), parent.get("tokens_per_s")),
                "latency_ms": mine.get("latency_ms"),
                "parent_latency_ms": parent.get("latency_ms"),
                "latency_tokens": mine.get("latency_tokens"),
                "scores": [
                    {
                        "key": k,
                        "value": value,
                        "parent": parent_scores.get(k),
                        "delta": value - parent_scores[k] if k in parent_scores else None,
                    }
                    for k, value in scores.items()
                ],
            }
        )
    return rows


def export_jobs(*, project: Project, limit: int = 5) -> list[Job]:
    return list(
        Job.objects.filter(project=project, kind=JobKind.EXPORT)
        .select_related("base_model")
        .prefetch_related("outputs")
        .order_by("-created_at", "-id")[:limit]
    )
