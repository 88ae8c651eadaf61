"""The application stage's pages: applications and versions, the playground (with the
serving worker replaced by scripted events), the fallback review, evaluation sets, app
evaluations and the checklist reading what is set up."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from lifecycle_app.models import (
    AppEvalQuestion,
    AppEvalSet,
    Application,
    ApplicationVersion,
    CatalogModel,
    FallbackQuestion,
    IndexStatus,
    Job,
    JobKind,
    JobStatus,
    KnowledgeIndex,
    Membership,
    Project,
    Role,
)
from lifecycle_app.stages.integrate.app import knowledge
from tests.factories import JobFactory

TEMPLATE = "Context:\n{context}\n\nQuestion: {input}"


@pytest.fixture
def editor(project: Project) -> User:
    user = User.objects.create_user("eddie", password="pw")
    Membership.objects.create(project=project, user=user, role=Role.EDITOR)
    return user


def login(client: Client, user: User) -> Client:
    client.force_login(user)
    return client


def form_data(model: CatalogModel, **overrides: Any) -> dict[str, Any]:
    data = {
        "name": "Helpdesk",
        "model": f"base:{model.slug}",
        "template": TEMPLATE,
        "retrieval": "off",
        "top_k": 4,
        "threshold": "",
        "cite": "on",
        "reasoning": "none",
        "fallback_min_score": "",
        "max_new_tokens": 32,
        "note": "",
    }
    data.update(overrides)
    return data


@pytest.fixture
def index_job(project: Project, tiny_model: CatalogModel, tmp_path: Path) -> KnowledgeIndex:
    folder = tmp_path / "index"
    folder.mkdir()
    for name in knowledge.INDEX_FILES:
        (folder / name).write_text("x")
    return KnowledgeIndex.objects.create(
        project=project,
        status=IndexStatus.READY,
        folder=str(folder),
        chunk_size=128,
        chunk_overlap=16,
        tokenizer_model=tiny_model,
        chunk_count=12,
        document_ids=[1, 2, 3],
        built_at=timezone.now(),
    )


@pytest.fixture
def version(
    project: Project, tiny_model: CatalogModel, owner: User, tiny_folder: Path
) -> ApplicationVersion:
    app = Application.objects.create(project=project, name="Helpdesk", created_by=owner)
    return ApplicationVersion.objects.create(
        application=app,
        number=1,
        candidate_kind="base",
        model=tiny_model,
        model_label="Tiny test model (catalog)",
        template=TEMPLATE,
        retrieval="off",
        top_k=4,
        cite=True,
        reasoning="none",
        max_new_tokens=16,
    )


# --- applications and versions --------------------------------------------------------


def test_an_editor_creates_an_application_with_version_1(
    client: Client, project: Project, editor: User, tiny_model: CatalogModel
) -> None:
    response = login(client, editor).post(
        reverse("app_list", args=[project.slug]), form_data(tiny_model)
    )
    app = Application.objects.get(project=project)
    assert response.status_code == 302 and response["Location"].endswith(f"/apps/{app.id}/")
    v = app.versions.get()
    assert (v.number, v.retrieval, v.model, v.created_by) == (1, "off", tiny_model, editor)


def test_the_template_needs_both_slots(
    client: Client, project: Project, editor: User, tiny_model: CatalogModel
) -> None:
    response = login(client, editor).post(
        reverse("app_list", args=[project.slug]), form_data(tiny_model, template="Q: {input}")
    )
    assert response.status_code == 200
    assert "The template must contain {context}" in response.content.decode()
    assert not Application.objects.exists()


def test_retrieval_needs_a_knowledge_index(
    client: Client, project: Project, editor: User, tiny_model: CatalogModel
) -> None:
    response = login(client, editor).post(
        reverse("app_list", args=[project.slug]), form_data(tiny_model, retrieval="hybrid")
    )
    assert "no knowledge index yet" in response.content.decode()
    assert not Application.objects.exists()


def test_top_k_is_bounded_and_fallback_needs_retrieval(
    client: Client, project: Project, editor: User, tiny_model: CatalogModel
) -> None:
    response = login(client, editor).post(
        reverse("app_list", args=[project.slug]),
        form_data(tiny_model, top_k=21, fallback_min_score="0.3"),
    )
    body = response.content.decode()
    assert "less than or equal to 20" in body
    assert "The fallback threshold needs retrieval" in body


def test_retrieval_with_an_index_saves(
    client: Client,
    project: Project,
    editor: User,
    tiny_model: CatalogModel,
    index_job: KnowledgeIndex,
) -> None:
    login(client, editor).post(
        reverse("app_list", args=[project.slug]),
        form_data(tiny_model, retrieval="hybrid", fallback_min_score="0.3", reasoning="calculator"),
    )
    v = ApplicationVersion.objects.get()
    assert (v.retrieval, v.fallback_min_score, v.reasoning) == ("hybrid", 0.3, "calculator")


def test_save_as_new_version_and_unchanged_settings_make_none(
    client: Client,
    project: Project,
    editor: User,
    version: ApplicationVersion,
    tiny_model: CatalogModel,
) -> None:
    url = reverse("app_detail", args=[project.slug, version.application_id])
    c = login(client, editor)
    page = c.get(url)
    assert page.status_code == 200 and "Save as new version" in page.content.decode()
    data = form_data(tiny_model, max_new_tokens=16)
    data.pop("name")
    c.post(url, data)
    assert version.application.versions.count() == 1  # nothing changed
    c.post(url, {**data, "reasoning": "step_by_step", "note": "try steps"})
    latest = version.application.versions.order_by("-number").first()
    assert latest is not None and (latest.number, latest.reasoning, latest.note) == (
        2,
        "step_by_step",
        "try steps",
    )
    version.refresh_from_db()
    assert version.reasoning == "none"  # versions are immutable


def test_access_outsider_404_viewer_403_wrong_method_405(
    client: Client, project: Project, outsider: User, teammate: User, version: ApplicationVersion
) -> None:
    urls = [
        reverse("app_list", args=[project.slug]),
        reverse("app_detail", args=[project.slug, version.application_id]),
        reverse("app_playground", args=[project.slug]),
        reverse("app_fallback", args=[project.slug]),
        reverse("app_evaluation", args=[project.slug]),
    ]
    login(client, outsider)
    for url in urls:
        assert client.get(url).status_code == 404, url
    login(client, teammate)  # a viewer
    for url in urls:
        assert client.get(url).status_code == 200, url
    assert client.post(urls[0], {}).status_code == 403
    assert client.put(urls[0]).status_code == 405
    assert client.get(reverse("app_ask", args=[project.slug])).status_code == 405


def test_htmx_gets_the_fragment(client: Client, project: Project, owner: User) -> None:
    response = login(client, owner).get(
        reverse("app_list", args=[project.slug]), HTTP_HX_REQUEST="true"
    )
    body = response.content.decode()
    assert 'id="apps"' in body and "<html" not in body


# --- the playground ---------------------------------------------------------------------

EVENTS: list[dict[str, Any]] = [
    {"type": "start"},
    {
        "type": "retrieval",
        "hits": [
            {
                "number": 1,
                "chunk_id": "c1",
                "document_id": 1,
                "document_name": "lunch.md",
                "position": 2,
                "text": "Lunch is at noon.",
                "score": 0.03,
                "scores": {"bm25": 1.5, "dense": 0.8},
                "ranks": {"bm25": 1, "dense": 1},
            }
        ],
    },
    {"type": "prompt", "text": "Context:\n[1] (lunch.md) Lunch is at noon.\n\nQuestion: when?"},
    {"type": "delta", "text": "At noon "},
    {"type": "delta", "text": "[1]."},
    {
        "type": "done",
        "answer": "At noon [1].",
        "citations": [{"number": 1, "chunk_id": "c1", "document_name": "lunch.md", "position": 2}],
        "fallback": False,
        "fallback_reason": "",
        "usage": {"prompt_tokens": 20, "completion_tokens": 5},
        "finish_reason": "stop",
    },
]


class Serving:
    """The serving worker replaced: records what was asked, answers with `events`."""

    def __init__(self) -> None:
        self.asked: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = list(EVENTS)

    def __call__(self, *, model_path: str, payload: dict[str, Any], timeout: float) -> Any:
        self.asked.append({"model_path": model_path, **payload})
        yield from self.events


@pytest.fixture
def serving(monkeypatch: pytest.MonkeyPatch) -> Serving:
    fake = Serving()
    monkeypatch.setattr("lifecycle_app.stages.deploy.serving.serve_stream", fake)
    return fake


def test_asking_without_javascript_renders_the_whole_answer(
    client: Client,
    project: Project,
    teammate: User,
    version: ApplicationVersion,
    serving: Serving,
    tiny_folder: Path,
) -> None:
    response = login(client, teammate).post(
        reverse("app_ask", args=[project.slug]), {"version": version.id, "question": " when? "}
    )
    body = response.content.decode()
    assert response.status_code == 200
    assert "At noon [1]." in body and "lunch.md" in body and 'href="#hit-1"' in body
    assert "bm25 1.500" in body and "[1] (lunch.md) Lunch is at noon." in body
    asked = serving.asked[0]
    assert asked["model_path"] == f"catalog:{version.model_id}"  # resolved on the worker
    assert asked["app"]["question"] == "when?"
    assert (
        asked["app"]["config"]["retrieval"] == "off"
        and asked["app"]["config"]["template"] == TEMPLATE
    )
    assert asked["max_tokens"] == 16 and asked["messages"] == [{"role": "user", "content": "when?"}]


def test_asking_with_accept_event_stream_streams_server_sent_events(
    client: Client,
    project: Project,
    owner: User,
    version: ApplicationVersion,
    serving: Serving,
) -> None:
    response = login(client, owner).post(
        reverse("app_ask", args=[project.slug]),
        {"version": version.id, "question": "when?"},
        HTTP_ACCEPT="text/event-stream",
    )
    assert response["Content-Type"] == "text/event-stream" and response.streaming
    raw = b"".join(response.streaming_content).decode()  # type: ignore[attr-defined]
    events = [json.loads(line[6:]) for line in raw.split("\n") if line.startswith("data: ")]
    assert [e["type"] for e in events] == [e["type"] for e in EVENTS]


def test_a_fallback_answer_is_recorded_for_review_and_handled(
    client: Client,
    project: Project,
    owner: User,
    version: ApplicationVersion,
    serving: Serving,
) -> None:
    serving.events = [
        {"type": "retrieval", "hits": []},
        {"type": "delta", "text": "I'm sorry, I don't know."},
        {
            "type": "done",
            "answer": "I'm sorry, I don't know.",
            "citations": [],
            "fallback": True,
            "fallback_reason": "Nothing relevant was found in the documents.",
            "usage": {},
            "finish_reason": "stop",
        },
    ]
    c = login(client, owner)
    body = c.post(
        reverse("app_ask", args=[project.slug]), {"version": version.id, "question": "zebras?"}
    ).content.decode()
    assert "did not answer" in body
    item = FallbackQuestion.objects.get()
    assert (item.question, item.version, item.handled_at) == ("zebras?", version, None)
    page = c.get(reverse("app_fallback", args=[project.slug])).content.decode()
    assert "zebras?" in page and "Nothing relevant" in page
    c.post(reverse("app_fallback_handled", args=[project.slug, item.id]), {"note": "emailed"})
    item.refresh_from_db()
    assert item.handled_at is not None and item.handled_by == owner and item.note == "emailed"
    assert "zebras?" not in c.get(reverse("app_fallback", args=[project.slug])).content.decode()


def test_a_version_whose_model_is_gone_gets_an_error_event(
    client: Client,
    project: Project,
    owner: User,
    version: ApplicationVersion,
    serving: Serving,
) -> None:
    ApplicationVersion.objects.filter(id=version.id).update(model=None)
    body = (
        login(client, owner)
        .post(reverse("app_ask", args=[project.slug]), {"version": version.id, "question": "when?"})
        .content.decode()
    )
    assert "cannot answer: Its model" in body and "was deleted" in body and not serving.asked


def test_a_version_of_another_project_is_never_asked(
    client: Client, owner: User, version: ApplicationVersion, serving: Serving
) -> None:
    from tests.factories import make_project

    other = make_project(owner, name="Other")
    response = login(client, owner).post(
        reverse("app_ask", args=[other.slug]), {"version": version.id, "question": "when?"}
    )
    assert response.status_code == 200 and not serving.asked


# --- evaluation sets and app evaluations --------------------------------------------------


def upload(
    client: Client, project: Project, name: str, content: bytes, set_name: str = "Set A"
) -> str:
    response = client.post(
        reverse("app_evalset_upload", args=[project.slug]),
        {"name": set_name, "file": SimpleUploadedFile(name, content)},
    )
    return response.content.decode() if response.status_code == 200 else ""


def test_a_jsonl_set_uploads_and_a_csv_set_too(
    client: Client, project: Project, owner: User
) -> None:
    c = login(client, owner)
    rows = [
        {"question": "When is lunch?", "answer": "noon", "document": "lunch.md"},
        {"question": "Who?", "reference": "Ann"},
    ]
    assert upload(c, project, "q.jsonl", "\n".join(json.dumps(r) for r in rows).encode()) == ""
    assert (
        upload(
            c,
            project,
            "q.csv",
            b"question,reference,passage\nWhere?,Paris,The office is in Paris\n",
            "Set B",
        )
        == ""
    )
    a, b = AppEvalSet.objects.order_by("name")
    assert [q.document_name for q in a.questions.all()] == ["lunch.md", ""]
    assert b.questions.get().passage == "The office is in Paris"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("q.jsonl", b"", "file is empty."),
        ("q.jsonl", b"\x00\x01\x02binary", "binary file"),
        ("q.jsonl", b"\xff\xfe\xfa", "not UTF-8"),
        ("q.jsonl", b'{"question": "a?", "answer": "b"}\n{oops\n[1]\n', "Line 2: not valid JSON"),
        ("q.jsonl", b'{"question": "a?"}\n', "Line 1: no reference"),
        ("q.csv", b"prompt,answer\nx,y\n", "needs a question column"),
        ("q.txt", b"hello", "Upload a .jsonl or .csv file."),
    ],
)
def test_a_bad_set_is_refused_with_each_problem_named(
    client: Client, project: Project, owner: User, name: str, content: bytes, message: str
) -> None:
    body = upload(login(client, owner), project, name, content)
    assert message in body
    assert not AppEvalSet.objects.exists() and not AppEvalQuestion.objects.exists()


def test_drafted_questions_count_only_once_accepted(
    client: Client, project: Project, owner: User
) -> None:
    from lifecycle_app.stages.integrate.app import services

    s = services.eval_set_create(
        project=project, user=owner, name="Drafts", rows=[], source="drafted"
    )
    services.drafted_questions_add(
        eval_set_id=s.id, rows=[{"question": f"Q{i}?", "reference": f"A{i}"} for i in range(3)]
    )
    q1, q2, q3 = s.questions.order_by("position")
    assert {q.status for q in (q1, q2, q3)} == {"pending"}
    c = login(client, owner)
    page = c.get(reverse("app_evalset", args=[project.slug, s.id])).content.decode()
    assert "Accept" in page and "Reject" in page
    c.post(
        reverse("app_question_review", args=[project.slug, q1.id]),
        {"action": "accept", "question": "Edited?", "reference": "B"},
    )
    r = c.post(
        reverse("app_question_review", args=[project.slug, q2.id]),
        {"action": "reject"},
        HTTP_HX_REQUEST="true",
    )
    assert 'data-status="rejected"' in r.content.decode()
    q1.refresh_from_db()
    assert (q1.status, q1.question, q1.reference) == ("accepted", "Edited?", "B")
    from lifecycle_app.stages.integrate.app.selectors import accepted_questions

    assert [q.id for q in accepted_questions(eval_set=s)] == [q1.id]


def test_an_app_evaluation_snapshots_versions_and_accepted_questions(
    client: Client,
    project: Project,
    owner: User,
    version: ApplicationVersion,
    enqueued: list[int],
    tiny_folder: Path,
    django_capture_on_commit_callbacks: Any,
) -> None:
    from lifecycle_app.stages.integrate.app import services

    s = services.eval_set_create(
        project=project, user=owner, name="S", rows=[{"question": "Q?", "reference": "A"}]
    )
    services.drafted_questions_add(
        eval_set_id=s.id, rows=[{"question": "pending?", "reference": "x"}]
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = login(client, owner).post(
            reverse("app_eval_start", args=[project.slug]),
            {"eval_set": s.id, "versions": [version.id], "k": 3},
        )
    job = Job.objects.get(kind=JobKind.APP_EVALUATE)
    assert response.status_code == 302 and enqueued == [job.id]
    assert [q["question"] for q in job.params["questions"]] == ["Q?"]
    v = job.params["versions"][0]
    assert v["model_path"] == f"catalog:{version.model_id}" and v["config"]["template"] == TEMPLATE
    assert job.progress_total == 1  # retrieval off: one run per question


def test_the_scorecard_shows_retrievers_and_versions_side_by_side(
    client: Client, project: Project, owner: User, version: ApplicationVersion
) -> None:
    summary = {
        "rougeL": 0.5,
        "exact": 0.0,
        "contains": 1.0,
        "cited_holds": 0.75,
        "fallback_rate": 0.0,
    }
    job: Job = JobFactory(  # type: ignore[assignment]
        project=project,
        kind=JobKind.APP_EVALUATE,
        status=JobStatus.SUCCEEDED,
        base_model=None,
        params={"mode": "evaluate"},
        result={
            "k": 5,
            "questions": 4,
            "retrieval": {
                m: {"recall_at_k": 0.5, "mrr": 0.25} for m in ("bm25", "dense", "hybrid")
            },
            "versions": [
                {
                    "version_id": version.id,
                    "label": "Helpdesk v1",
                    "with": summary,
                    "without": {**summary, "rougeL": 0.2, "cited_holds": None},
                }
            ],
        },
    )
    body = (
        login(client, owner)
        .get(reverse("app_scorecard", args=[project.slug, job.id]))
        .content.decode()
    )
    assert "recall@5" in body and "hybrid" in body and "Helpdesk v1" in body
    assert "0.300" in body  # ROUGE-L change with retrieval
    assert "Cited chunk holds it" in body


# --- the checklist reads what is set up -------------------------------------------------


def test_the_checklist_shows_what_the_records_say(
    client: Client,
    project: Project,
    owner: User,
    version: ApplicationVersion,
    index_job: KnowledgeIndex,
) -> None:
    FallbackQuestion.objects.create(version=version, question="?", reason="r")
    body = (
        login(client, owner)
        .get(reverse("wizard_step", args=[project.slug, "integrate", "app"]))
        .content.decode()
    )
    assert "Knowledge index: 12 chunks from 3 documents (index #" in body
    assert "No app evaluation has run yet" in body
    assert "Versions by reasoning aid: None 1." in body
    assert "1 question waiting for review" in body
    assert 'data-testid="serving-monitoring"' in body


def test_an_index_job_whose_files_are_gone_is_no_index(
    project: Project, index_job: KnowledgeIndex
) -> None:
    assert knowledge.index_location(project=project) is not None
    (Path(index_job.folder) / "dense.npy").unlink()
    assert knowledge.index_location(project=project) is None


def test_deploying_a_version_makes_it_the_only_one_the_api_answers_with(
    client: Client, project: Project, owner: User, version: ApplicationVersion
) -> None:
    from lifecycle_app.stages.integrate.app.selectors import deployed_app_payload

    assert deployed_app_payload(project=project) is None
    second = ApplicationVersion.objects.create(
        application=version.application,
        number=2,
        candidate_kind="base",
        model=version.model,
        model_label=version.model_label,
        template=TEMPLATE,
        retrieval="off",
    )
    c = login(client, owner)
    c.post(reverse("app_version_deploy", args=[project.slug, version.id]))
    c.post(reverse("app_version_deploy", args=[project.slug, second.id]))
    payload = deployed_app_payload(project=project)
    assert payload is not None and payload["version_id"] == second.id
    assert payload["name"] == "helpdesk" and payload["config"]["template"] == TEMPLATE
    assert ApplicationVersion.objects.filter(deployed_at__isnull=False).count() == 1
    page = c.get(reverse("app_detail", args=[project.slug, version.application_id]))
    assert page.content.decode().count('data-testid="deployed"') == 1


def test_a_drafted_reply_is_read_as_question_and_answer() -> None:
    from workers.tasks.app_evaluate import parse_draft

    assert parse_draft("Question: When is lunch?\nAnswer: At noon.\nMore text") == (
        "When is lunch?",
        "At noon.",
    )
    assert parse_draft("question:  Who  signs\nvisitors in? answer: the desk") == (
        "Who signs visitors in?",
        "the desk",
    )
    assert parse_draft("Just some text") is None
    assert parse_draft("Question: ?\nAnswer: x") is None  # too short to be a question
