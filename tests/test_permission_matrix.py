"""The permission matrix: every URL of the application, for every kind of visitor, GET and POST.

The URL list comes from the resolver, so a new URL is walked automatically. Two tables say
what the test cannot guess, and the test fails loudly when a URL is missing from either:

- ACCESS: for each URL name, the methods it accepts and who may use each one (PUBLIC,
  LOGIN: any account, VIEWER / EDITOR / OWNER: that role or above in the project, SHARE:
  anyone holding a valid share token, TOKEN: an API token of the project, never a
  session: every visitor here gets 401, tests/unit/test_api.py covers the tokens).
- KWARGS: how to fill each URL keyword from the objects the `world` fixture creates
  (FOREIGN: the same kind of object in another project). Adding a URL keyword is one line
  here and, if it names a new kind of object, one object in `world`. Keywords whose
  values come from the wizard's definition (`stage`, `step`) expand into every step.

Visitors: anonymous, outsider (an account with no role in the project), viewer, editor,
owner, and share visitors (no account, with the project's share link; on /s/ pages also
with a revoked and an expired link). Expected:
- anonymous and share visitors on any page that needs an account: a redirect to log in;
- outsiders: 404 on every /p/ page (the project's existence is not revealed);
- members below the role a method needs: 403; members with it: success;
- a method the URL does not take: 405;
- /s/ pages: 200 to GET with a valid token, 404 with a bad, revoked or expired one, and
  404 for another project's object addressed through the link;
- refused requests change nothing, and no GET changes anything, for anyone.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from lifecycle_app.datasets import services as dataset_services
from lifecycle_app.models import (
    Activity,
    ApiToken,
    AppEvalQuestion,
    AppEvalSet,
    Application,
    ApplicationVersion,
    CandidateStatus,
    CatalogModel,
    Dataset,
    EvaluationCandidate,
    EvaluationExample,
    FallbackQuestion,
    FeedbackItem,
    FeedbackRound,
    Job,
    JobKind,
    JobStatus,
    KnowledgeDocument,
    Membership,
    ModelVariant,
    PreferencePair,
    PreferenceSet,
    Project,
    PromptTemplate,
    Role,
    ShareLink,
    Stage,
    VariantKind,
)
from lifecycle_app.projects import steps
from lifecycle_app.stages.deploy.services import api_token_create
from lifecycle_app.teams.services import share_link_create
from tests.factories import CatalogModelFactory, JobFactory, UserFactory, make_project

PUBLIC, LOGIN, SHARE, TOKEN = "public", "login", "share", "token"
VIEWER, EDITOR, OWNER = Role.VIEWER.value, Role.EDITOR.value, Role.OWNER.value
RANK = {VIEWER: 1, EDITOR: 2, OWNER: 3}
Rule = dict[str, str]  # method -> who may use it


def _step_rule(kwargs: dict[str, Any]) -> Rule:
    step = steps.step_def(kwargs["stage"], kwargs["step"])
    assert step is not None
    # A planned step has no form: GET only.
    return {"GET": VIEWER, "POST": EDITOR} if step.available else {"GET": VIEWER}


ACCESS: dict[str, Rule | Callable[[dict[str, Any]], Rule]] = {
    # Accounts and pages across projects.
    "signup": {"GET": PUBLIC, "POST": PUBLIC},
    "login": {"GET": PUBLIC, "POST": PUBLIC},
    "logout": {"POST": PUBLIC},
    "healthz": {"GET": PUBLIC},
    "project_list": {"GET": LOGIN, "POST": LOGIN},
    "all_jobs": {"GET": LOGIN},
    # One project's pages.
    "project_detail": {"GET": VIEWER},
    "project_jobs": {"GET": VIEWER},
    "job_detail": {"GET": VIEWER},
    "job_status": {"GET": VIEWER},
    "job_cancel": {"POST": EDITOR},
    "job_run_again": {"POST": EDITOR},
    "job_resume": {"POST": EDITOR},
    "model_add": {"GET": VIEWER, "POST": EDITOR},
    "dataset_list": {"GET": VIEWER},
    "dataset_upload": {"POST": EDITOR},
    "dataset_staged": {"GET": VIEWER, "POST": EDITOR},
    "dataset_staged_discard": {"POST": EDITOR},
    "dataset_detail": {"GET": VIEWER},
    "dataset_rename": {"POST": EDITOR},
    "dataset_delete": {"GET": VIEWER, "POST": EDITOR},
    "dataset_download": {"GET": VIEWER},
    "wizard_step": _step_rule,
    # Prompt trials.
    "trial_list": {"GET": VIEWER},
    "trial_compare": {"GET": VIEWER},
    "trial_detail": {"GET": VIEWER},
    "trial_best": {"POST": EDITOR},
    "template_new": {"GET": VIEWER, "POST": EDITOR},
    "template_detail": {"GET": VIEWER, "POST": EDITOR},
    "prompt_preview": {"GET": VIEWER},
    "playground": {"GET": VIEWER, "POST": EDITOR},
    "finetune_detail": {"GET": VIEWER},
    "align_run_detail": {"GET": VIEWER},
    # Evaluation.
    "scorecard": {"GET": VIEWER},
    "evaluation_detail": {"GET": VIEWER},
    "evaluation_compare": {"GET": VIEWER},
    "evaluation_export": {"GET": VIEWER},
    # Human feedback and alignment: anyone in the project sees rounds and sets; editors
    # and owners rate, build and import.
    "round_new": {"POST": EDITOR},
    "round_detail": {"GET": VIEWER},
    "round_rate": {"GET": EDITOR, "POST": EDITOR},
    "round_build": {"POST": EDITOR},
    "prefset_import": {"GET": VIEWER, "POST": EDITOR},
    "prefset_detail": {"GET": VIEWER},
    "prefset_export": {"GET": VIEWER},
    # Members and sharing.
    "members": {"GET": VIEWER},
    "member_invite": {"POST": OWNER},
    "member_leave": {"POST": VIEWER},
    "member_role": {"POST": OWNER},
    "member_remove": {"POST": OWNER},
    "share_create": {"POST": OWNER},
    "share_revoke": {"POST": OWNER},
    "project_delete": {"GET": OWNER, "POST": OWNER},
    # Optimize and deploy.
    "variant_deploy": {"POST": EDITOR},
    "variant_download": {"GET": VIEWER},
    "api_token_create": {"POST": OWNER},
    "api_token_revoke": {"POST": OWNER},
    "api_generate": {"POST": TOKEN},
    # The OpenAI-compatible endpoint: API tokens only (no session, no share link).
    "v1_chat_completions": {"POST": TOKEN},
    "v1_models": {"GET": TOKEN},
    # Knowledge base: anyone in the project reads and searches; editors change it.
    "knowledge_base": {"GET": VIEWER},
    "knowledge_upload": {"POST": EDITOR},
    "knowledge_remove": {"GET": EDITOR, "POST": EDITOR},
    "knowledge_index": {"POST": EDITOR},
    "knowledge_index_status": {"GET": VIEWER},
    "knowledge_search": {"GET": VIEWER},
    # Applications: members ask and read; editors and owners build, deploy, review, measure.
    "app_list": {"GET": VIEWER, "POST": EDITOR},
    "app_detail": {"GET": VIEWER, "POST": EDITOR},
    "app_version_deploy": {"POST": EDITOR},
    "app_playground": {"GET": VIEWER},
    "app_ask": {"POST": VIEWER},
    "app_fallback": {"GET": VIEWER},
    "app_fallback_handled": {"POST": EDITOR},
    "app_evaluation": {"GET": VIEWER},
    "app_eval_start": {"POST": EDITOR},
    "app_scorecard": {"GET": VIEWER},
    "app_evalset_upload": {"POST": EDITOR},
    "app_evalset_draft": {"POST": EDITOR},
    "app_evalset": {"GET": VIEWER},
    "app_question_review": {"POST": EDITOR},
    # Read-only share pages.
    "share_project": {"GET": SHARE},
    "share_step": {"GET": SHARE},
    "share_jobs": {"GET": SHARE},
    "share_job": {"GET": SHARE},
    "share_job_status": {"GET": SHARE},
    "share_scorecard": {"GET": SHARE},
    "share_evaluation": {"GET": SHARE},
    "share_evaluation_compare": {"GET": SHARE},
    "share_trial_list": {"GET": SHARE},
    "share_trial_compare": {"GET": SHARE},
    "share_trial_detail": {"GET": SHARE},
    "share_finetune_detail": {"GET": SHARE},
    "share_align_run": {"GET": SHARE},
}


@dataclass
class World:
    """The objects URLs point at: the project under test, and another project."""

    project: Project
    other: Project
    users: dict[str, User]
    job: Job
    other_job: Job
    dataset: Dataset
    other_dataset: Dataset
    staged_token: str
    other_staged_token: str
    target_member: Membership
    other_member: Membership
    share: ShareLink
    other_share: ShareLink
    revoked_share: ShareLink
    expired_share: ShareLink
    # Set per visitor: the share token that visitor holds (see _share_token_for).
    share_token: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


KWARGS: dict[str, Callable[[World], Any]] = {
    "slug": lambda w: w.project.slug,
    "job_id": lambda w: w.job.id,
    "dataset_id": lambda w: w.dataset.id,
    "token": lambda w: w.staged_token,
    "member_id": lambda w: w.target_member.id,
    "share_id": lambda w: w.share.id,
    "share_token": lambda w: w.share_token,
    "trial_id": lambda w: w.extra["trial"].id,
    "template_id": lambda w: w.extra["template"].id,
    "run_id": lambda w: w.extra["run"].id,
    "align_run_id": lambda w: w.extra["align_run"].id,
    "eval_id": lambda w: w.extra["evaluation"].id,
    "round_id": lambda w: w.extra["round"].id,
    "set_id": lambda w: w.extra["set"].id,
    "variant_id": lambda w: w.extra["variant"].id,
    "token_id": lambda w: w.extra["api_token"].id,
    "document_id": lambda w: w.extra["document"].id,
    "app_id": lambda w: w.extra["app_version"].application_id,
    "version_id": lambda w: w.extra["app_version"].id,
    "item_id": lambda w: w.extra["fallback"].id,
    "evalset_id": lambda w: w.extra["evalset"].id,
    "question_id": lambda w: w.extra["question"].id,
    "app_eval_id": lambda w: w.extra["app_eval"].id,
}
# The same keywords, naming an object of the other project (the owner owns both).
FOREIGN: dict[str, Callable[[World], Any]] = {
    "job_id": lambda w: w.other_job.id,
    "dataset_id": lambda w: w.other_dataset.id,
    "token": lambda w: w.other_staged_token,
    "member_id": lambda w: w.other_member.id,
    "share_id": lambda w: w.other_share.id,
    "trial_id": lambda w: w.extra["other_trial"].id,
    "template_id": lambda w: w.extra["other_template"].id,
    "run_id": lambda w: w.extra["other_run"].id,
    "align_run_id": lambda w: w.extra["other_align_run"].id,
    "eval_id": lambda w: w.extra["other_evaluation"].id,
    "round_id": lambda w: w.extra["other_round"].id,
    "set_id": lambda w: w.extra["other_set"].id,
    "variant_id": lambda w: w.extra["other_variant"].id,
    "token_id": lambda w: w.extra["other_api_token"].id,
    "document_id": lambda w: w.extra["other_document"].id,
    "app_id": lambda w: w.extra["other_app_version"].application_id,
    "version_id": lambda w: w.extra["other_app_version"].id,
    "item_id": lambda w: w.extra["other_fallback"].id,
    "evalset_id": lambda w: w.extra["other_evalset"].id,
    "question_id": lambda w: w.extra["other_question"].id,
    "app_eval_id": lambda w: w.extra["other_app_eval"].id,
}
# Keywords whose values are known without a database: each URL is walked for every value.
EVERY_STEP = [
    {"stage": stage.key.value, "step": step.slug} for stage in steps.STAGES for step in stage.steps
]
STATIC_KWARGS: dict[frozenset[str], list[dict[str, Any]]] = {
    frozenset({"stage", "step"}): EVERY_STEP,
}
SKIPPED_NAMESPACES = {"admin"}  # admin: see test_admin_is_behind_a_staff_login


@dataclass(frozen=True)
class Url:
    name: str
    route: str
    kwarg_names: tuple[str, ...]
    static: tuple[tuple[str, Any], ...] = ()

    @property
    def is_share_page(self) -> bool:
        return "share_token" in self.kwarg_names

    @property
    def label(self) -> str:
        suffix = "".join(f":{v}" for _, v in self.static)
        return f"{self.name}{suffix}"

    def rule(self) -> Rule:
        entry = ACCESS.get(self.name)
        if entry is None:
            pytest.fail(
                f"URL {self.name!r} ({self.route}) is not in ACCESS: say who may GET and POST it.",
                pytrace=False,
            )
        return entry(dict(self.static)) if callable(entry) else entry

    def unknown_kwargs(self) -> list[str]:
        static = {k for k, _ in self.static}
        return [k for k in self.kwarg_names if k not in KWARGS and k not in static]

    def reverse(self, world: World, *, foreign: bool = False) -> str:
        unknown = self.unknown_kwargs()
        if unknown:
            pytest.fail(
                f"URL {self.name!r} ({self.route}) has keyword(s) {unknown} that the matrix "
                "cannot fill: add them to KWARGS (and FOREIGN for object ids).",
                pytrace=False,
            )
        kwargs = dict(self.static)
        for name in self.kwarg_names:
            if name in kwargs:
                continue
            source = FOREIGN if foreign and name in FOREIGN else KWARGS
            kwargs[name] = source[name](world)
        return reverse(self.name, kwargs=kwargs)


def _walk(patterns: list[Any], prefix: str = "") -> Iterator[tuple[str, URLPattern]]:
    for entry in patterns:
        if isinstance(entry, URLResolver):
            if entry.namespace in SKIPPED_NAMESPACES or entry.app_name in SKIPPED_NAMESPACES:
                continue
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry


def _kwarg_names(pattern: URLPattern) -> tuple[str, ...]:
    converters = getattr(pattern.pattern, "converters", None)
    if converters:
        return tuple(converters)
    regex = getattr(pattern.pattern, "regex", None)
    return tuple(regex.groupindex) if regex is not None else ()


def all_urls() -> list[Url]:
    urls = []
    for route, pattern in _walk(get_resolver().url_patterns):
        if route.startswith(("static/", "media/")):
            continue
        if not pattern.name:
            pytest.fail(f"URL {route} has no name: name it, so the matrix can reverse it.")
        names = _kwarg_names(pattern)
        expansions: list[dict[str, Any]] = [{}]
        for keys, values in STATIC_KWARGS.items():
            if keys <= set(names):
                expansions = [{**e, **v} for e in expansions for v in values]
        for static in expansions:
            urls.append(Url(pattern.name, route, names, tuple(sorted(static.items()))))
    return urls


URLS = all_urls()
VISITORS = ["anonymous", "outsider", VIEWER, EDITOR, OWNER, "share"]
SHARE_ONLY_VISITORS = ["revoked_share", "expired_share"]
CASES = [
    pytest.param(url, method, visitor, id=f"{url.label}-{method}-{visitor}")
    for url in URLS
    for method in ("GET", "POST")
    for visitor in VISITORS + (SHARE_ONLY_VISITORS if url.is_share_page else [])
]
FOREIGN_CASES = [
    pytest.param(url, method, id=f"{url.label}-{method}")
    for url in URLS
    if any(name in FOREIGN for name in url.kwarg_names)
    for method in ("GET", "POST")
]


# --- the world ------------------------------------------------------------------------


def _dataset(project: Project, owner: User, name: str) -> Dataset:
    dataset = Dataset.objects.create(
        project=project,
        name=name,
        original_filename="rows.jsonl",
        stored_name=f"{project.id}-{name.lower().replace(' ', '-')}.jsonl",
        format="jsonl",
        sha256="0" * 64,
        input_field="input",
        target_field="target",
        total_rows=2,
        valid_rows=2,
        split_fractions=[0.5, 0.5, 0.0],
        split_counts={"train": 1, "validation": 1, "test": 0},
        created_by=owner,
    )
    dataset.original_path.parent.mkdir(parents=True, exist_ok=True)
    rows = '{"input": "a", "target": "b"}\n{"input": "c", "target": "d"}\n'
    dataset.original_path.write_text(rows)
    dataset.clean_path.write_text(rows)
    return dataset


def _staged(project: Project, user: User) -> str:
    rows = '{"input": "a", "target": "b"}\n{"input": "c", "target": "d"}\n'
    return dataset_services.dataset_stage_text(project=project, user=user, text=rows).token


@pytest.fixture
def world(db: None, settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    settings.DATASETS_DIR = tmp_path / "datasets"
    settings.VAR_DIR = tmp_path / "var"
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path / "uploads")
    Path(settings.FILE_UPLOAD_TEMP_DIR).mkdir()
    monkeypatch.setattr("lifecycle_app.jobs.services._enqueue", lambda job_id: None)
    CatalogModelFactory()
    users: dict[str, User] = {
        name: cast(User, UserFactory(username=username))
        for name, username in [
            (OWNER, "alice"),
            (EDITOR, "erin"),
            (VIEWER, "victor"),
            ("outsider", "charlie"),
            ("target", "tara"),
        ]
    }
    owner = users[OWNER]
    project = make_project(owner, "Ticket summaries")
    other = make_project(owner, "Another project")
    for role in (EDITOR, VIEWER):
        Membership.objects.create(project=project, user=users[role], role=role)
    target = Membership.objects.create(project=project, user=users["target"], role=VIEWER)
    other_member = Membership.objects.create(project=other, user=users[VIEWER], role=VIEWER)
    share = share_link_create(project=project, actor=owner, lifetime=None)
    revoked = share_link_create(project=project, actor=owner, lifetime=None)
    ShareLink.objects.filter(id=revoked.id).update(revoked_at=timezone.now())
    expired = share_link_create(project=project, actor=owner, lifetime=timedelta(days=1))
    ShareLink.objects.filter(id=expired.id).update(expires_at=timezone.now() - timedelta(seconds=1))
    extra: dict[str, Any] = {}
    parent = CatalogModel.objects.get()
    for key, proj in (("", project), ("other_", other)):
        template = PromptTemplate.objects.create(
            project=proj, name="Summarize", body="{instruction}\n{input}", created_by=owner
        )
        extra[f"{key}evaluation"] = evaluation = JobFactory.create(
            project=proj,
            created_by=owner,
            kind=JobKind.EVALUATE,
            status=JobStatus.SUCCEEDED,
            params={"split": "test", "n_rows": 2, "task": "text"},
            result={"scored": 2, "rows": 2},
        )
        for position, label in enumerate(("Base · zero-shot", "Trial #1 · 2-shot")):
            candidate = EvaluationCandidate.objects.create(
                job=evaluation,
                position=position,
                label=label,
                kind="base" if position == 0 else "trial",
                status=CandidateStatus.DONE,
                spec={"shots": 0, "template": {"name": "Summarize", "version": 1}},
                scores={"rougeL": 0.2 + position / 10, "perplexity": 20.0 - position},
            )
            EvaluationExample.objects.create(
                candidate=candidate,
                index=0,
                line=1,
                input="a",
                reference="b",
                output="b" if position else "c",
                status="done",
                scores={"rougeL": float(position)},
            )
        extra[f"{key}template"] = template
        extra[f"{key}trial"] = JobFactory.create(
            project=proj,
            created_by=owner,
            kind=JobKind.TRIAL,
            prompt_template=template,
            status=JobStatus.SUCCEEDED,
            params={"shots": 0, "split": "validation"},
            result={"scores": {"rougeL": 0.5}, "rows_done": 1},
        )
        extra[f"{key}run"] = JobFactory.create(
            project=proj,
            created_by=owner,
            kind=JobKind.FINETUNE,
            status=JobStatus.RUNNING,
            params={"method": "lora", "template": {"name": "Summarize", "version": 1}},
        )
        extra[f"{key}align_run"] = JobFactory.create(
            project=proj,
            created_by=owner,
            kind=JobKind.ALIGN,
            status=JobStatus.RUNNING,
            params={
                "beta": 0.1,
                "lora_r": 8,
                "target_modules": ["q_proj"],
                "batch_size": 2,
                "max_length": 256,
                "heldout_fraction": 0.1,
                "seed": 0,
            },
        )
        rnd = FeedbackRound.objects.create(
            project=proj, name="Round", label_a="A", label_b="B", created_by=owner
        )
        FeedbackItem.objects.create(
            round=rnd, index=0, line=1, input="hi", prompt="hi", completion_a="a", completion_b="b"
        )
        extra[f"{key}round"] = rnd
        pset = PreferenceSet.objects.create(project=proj, name="Prefs", source="import")
        PreferencePair.objects.create(
            preference_set=pset, index=0, prompt="p", chosen="c", rejected="r"
        )
        extra[f"{key}set"] = pset
        export_job = JobFactory.create(
            project=proj, created_by=owner, kind=JobKind.EXPORT, status=JobStatus.SUCCEEDED
        )
        bundle = tmp_path / f"{key}bundle.zip"
        bundle.write_bytes(b"PK\x05\x06" + b"\0" * 18)  # an empty zip
        extra[f"{key}variant"] = ModelVariant.objects.create(
            project=proj,
            job=export_job,
            kind=VariantKind.INT8,
            parent=parent,
            path=str(tmp_path / f"{key}variant"),
            bundle_path=str(bundle),
        )
        extra[f"{key}api_token"], _ = api_token_create(project=proj, actor=owner, name="app")
        extra[f"{key}document"] = KnowledgeDocument.objects.create(
            project=proj, name="faq.md", kind="markdown", stored_name=f"{key}faq.md", sha256="0"
        )
        app = Application.objects.create(project=proj, name="Helpdesk", created_by=owner)
        extra[f"{key}app_version"] = version = ApplicationVersion.objects.create(
            application=app,
            candidate_kind="base",
            model=parent,
            model_label="Tiny",
            template="{context}\n{input}",
            retrieval="off",
        )
        extra[f"{key}fallback"] = FallbackQuestion.objects.create(
            version=version, question="?", reason="nothing found"
        )
        extra[f"{key}evalset"] = evalset = AppEvalSet.objects.create(project=proj, name="Qs")
        extra[f"{key}question"] = AppEvalQuestion.objects.create(
            eval_set=evalset, position=1, question="q?", reference="a", status="pending"
        )
        extra[f"{key}app_eval"] = JobFactory.create(
            project=proj,
            created_by=owner,
            kind=JobKind.APP_EVALUATE,
            status=JobStatus.SUCCEEDED,
            params={"mode": "evaluate"},
            result={"k": 5, "questions": 1, "retrieval": {}, "versions": []},
        )
    return World(
        extra=extra,
        project=project,
        other=other,
        users=users,
        job=JobFactory.create(project=project, created_by=owner),
        other_job=JobFactory.create(project=other, created_by=owner),
        dataset=_dataset(project, owner, "Tickets"),
        other_dataset=_dataset(other, owner, "Other tickets"),
        staged_token=_staged(project, owner),
        other_staged_token=_staged(other, owner),
        target_member=target,
        other_member=other_member,
        share=share,
        other_share=share_link_create(project=other, actor=owner, lifetime=None),
        revoked_share=revoked,
        expired_share=expired,
    )


def _share_token_for(world: World, visitor: str) -> str:
    return {
        "anonymous": "x" * 43,  # well-formed, but no such link
        "revoked_share": world.revoked_share.token,
        "expired_share": world.expired_share.token,
    }.get(visitor, world.share.token)


def _client(world: World, visitor: str) -> Client:
    client = Client()
    if visitor in world.users:
        client.force_login(world.users[visitor])
    elif visitor == "share":
        # A share visitor has opened the link: whatever that left in the session is here.
        assert client.get(reverse("share_project", args=[world.share.token])).status_code == 200
    return client


def snapshot() -> dict[str, Any]:
    """Everything a request could change, in comparable form."""
    staged = Path(django_settings.DATASETS_DIR) / "staged"
    return {
        "users": sorted(User.objects.values_list("id", "username", "is_active")),
        "projects": sorted(Project.objects.values_list("id", "slug", "name", "owner_id")),
        "members": sorted(Membership.objects.values_list("id", "project_id", "user_id", "role")),
        "stages": sorted(
            (s.project_id, s.key, json.dumps(s.steps, sort_keys=True)) for s in Stage.objects.all()
        ),
        "datasets": sorted(Dataset.objects.values_list("id", "name")),
        "jobs": sorted(Job.objects.values_list("id", "status", "cancel_requested_at")),
        "shares": sorted(ShareLink.objects.values_list("id", "revoked_at", "expires_at")),
        "variants": sorted(ModelVariant.objects.values_list("id", "deployed_at")),
        "api_tokens": sorted(ApiToken.objects.values_list("id", "revoked_at")),
        "activity": Activity.objects.count(),
        "models": CatalogModel.objects.count(),
        "app_versions": sorted(ApplicationVersion.objects.values_list("id", "deployed_at")),
        "fallbacks": sorted(FallbackQuestion.objects.values_list("id", "handled_at")),
        "app_questions": sorted(AppEvalQuestion.objects.values_list("id", "status", "question")),
        "app_eval_sets": AppEvalSet.objects.count(),
        "staged": sorted(p.name for p in staged.glob("*")) if staged.exists() else [],
    }


def _request(client: Client, method: str, url: str) -> Any:
    return client.get(url) if method == "GET" else client.post(url, {})


def _is_login_redirect(response: Any) -> bool:
    login = reverse(django_settings.LOGIN_URL)
    return response.status_code == 302 and response["Location"].startswith(f"{login}?next=")


def _expected(url: Url, method: str, visitor: str) -> str:
    """'ok', 'login', or a status code as a string."""
    rule = url.rule()
    need = rule.get(method)
    has_account = visitor in (OWNER, EDITOR, VIEWER, "outsider")
    if need is None:
        # A method the URL does not take. login_required runs before the method check, so
        # pages behind a login send visitors without an account to log in first.
        behind_login = not url.is_share_page and any(
            v not in (PUBLIC, TOKEN) for v in rule.values()
        )
        return "login" if behind_login and not has_account else "405"
    if need == PUBLIC:
        return "ok"
    if need == TOKEN:
        return "401"  # a session or share link is no API token
    if need == SHARE:
        return "ok" if visitor not in ("anonymous", *SHARE_ONLY_VISITORS) else "404"
    if not has_account:
        return "login"
    if need == LOGIN:
        return "ok"
    if visitor == "outsider":
        return "404"
    return "ok" if RANK[visitor] >= RANK[need] else "403"


@pytest.mark.parametrize(("url", "method", "visitor"), CASES)
def test_the_permission_matrix(url: Url, method: str, visitor: str, world: World) -> None:
    world.share_token = _share_token_for(world, visitor)
    client = _client(world, visitor)
    expected = _expected(url, method, visitor)
    path = url.reverse(world)
    before = snapshot()

    response = _request(client, method, path)

    status = response.status_code
    where = f"{visitor} {method} {path} ({url.name})"
    if expected == "ok":
        assert status < 400, f"{where}: expected success, got {status}"
        assert not _is_login_redirect(response), f"{where}: expected success, got sent to log in"
        if method == "GET" and url.rule()[method] not in (PUBLIC, LOGIN):
            assert status == 200, f"{where}: expected the page, got {status}"
    elif expected == "login":
        assert _is_login_redirect(response), f"{where}: expected a redirect to log in, got {status}"
    else:
        assert status == int(expected), f"{where}: expected {expected}, got {status}"
    if expected != "ok" or method == "GET":
        assert snapshot() == before, f"{where}: answered {status} but changed data"


@pytest.mark.parametrize(("url", "method"), FOREIGN_CASES)
def test_another_projects_object_is_404_through_this_project(
    url: Url, method: str, world: World
) -> None:
    """The owner owns both projects: only the scoping of the lookup can refuse this."""
    visitor = "share" if url.is_share_page else OWNER
    world.share_token = world.share.token
    client = _client(world, visitor)
    path = url.reverse(world, foreign=True)
    before = snapshot()

    response = _request(client, method, path)

    if method in url.rule():
        assert response.status_code == 404, f"{visitor} {method} {path}: {response.status_code}"
    else:
        assert response.status_code == 405
    assert snapshot() == before


def test_every_url_is_in_the_matrix() -> None:
    unclassified = sorted({u.name for u in URLS} - set(ACCESS))
    unfillable = sorted({f"{u.name}: {u.unknown_kwargs()}" for u in URLS if u.unknown_kwargs()})
    stale = sorted(set(ACCESS) - {u.name for u in URLS})
    assert not unclassified, f"Add these URL names to ACCESS: {unclassified}"
    assert not unfillable, f"Add these URL keywords to KWARGS: {unfillable}"
    assert not stale, f"ACCESS names URLs that no longer exist: {stale}"


def test_the_matrix_walks_share_pages_and_every_wizard_step() -> None:
    names = {u.name for u in URLS}
    assert {"share_project", "share_step", "members", "project_delete"} <= names
    steps = {dict(u.static)["step"] for u in URLS if u.name == "wizard_step"}
    assert steps == {s["step"] for s in EVERY_STEP}


@pytest.mark.parametrize(
    ("who", "expected"), [("anonymous", "login"), ("member", "login"), ("staff", 200)]
)
def test_admin_is_behind_a_staff_login(who: str, expected: Any, world: World) -> None:
    client = Client()
    if who == "member":
        client.force_login(world.users[OWNER])  # owns projects, but is not staff
    elif who == "staff":
        client.force_login(User.objects.create_user("root", is_staff=True, is_superuser=True))

    response = client.get(reverse("admin:index"))

    if expected == "login":
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))
    else:
        assert response.status_code == expected
