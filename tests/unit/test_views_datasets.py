"""Dataset pages: who may reach them, the upload → check → save flow, downloads, rename,
delete, rejected and oversized uploads, and the size-limited upload handler.

Every test gets its own DATASETS_DIR and FILE_UPLOAD_TEMP_DIR under tmp_path (the autouse
`storage` fixture), so nothing is written into the real var/ folder and each test can
assert that a refused upload left no file behind.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.files.uploadhandler import StopUpload
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

import lifecycle_app
from lifecycle_app.common.uploads import MULTIPART_ALLOWANCE, SizeLimitedUploadHandler
from lifecycle_app.datasets.services import (
    Mapping,
    StagedUpload,
    dataset_create_from_staged,
    dataset_stage_file,
    staged_cleanup,
)
from lifecycle_app.models import CatalogModel, Dataset, Job, JobKind, JobStatus, Project
from tests.factories import UserFactory, make_project

SAMPLE = Path(lifecycle_app.__file__).resolve().parent / "samples" / "dialogue_summaries.jsonl"
SAMPLE_BYTES = SAMPLE.read_bytes()
SAMPLE_ROWS = 181
MAPPING = Mapping(
    input_field="dialogue",
    target_field="summary",
    classification=False,
    seed=42,
    fractions=(0.8, 0.1, 0.1),
)
HTMX = {"HX-Request": "true"}
PASTED = (
    '{"input": "The printer on floor 3 is jammed.", "target": "Printer jammed."}\n'
    '{"input": "My invoice shows two charges.", "target": "Billed twice."}\n'
    '{"input": "The app logs me out.", "target": "Logged out repeatedly."}\n'
)


# --- Fixtures and helpers -----------------------------------------------------------------


@dataclass(frozen=True)
class Storage:
    datasets: Path
    uploads: Path

    def files(self) -> list[Path]:
        """Every file (not folder) under both folders, recursively."""
        found: list[Path] = []
        for root in (self.datasets, self.uploads):
            for folder, _, names in os.walk(root):
                found.extend(Path(folder) / name for name in names)
        return sorted(found)

    def staged_files(self) -> list[Path]:
        staged = self.datasets / "staged"
        return sorted(p for p in staged.iterdir()) if staged.exists() else []


@pytest.fixture(autouse=True)
def storage(settings: Any, tmp_path: Path) -> Storage:
    datasets, uploads = tmp_path / "datasets", tmp_path / "uploads"
    datasets.mkdir()
    uploads.mkdir()
    settings.DATASETS_DIR = datasets
    settings.FILE_UPLOAD_TEMP_DIR = str(uploads)
    return Storage(datasets=datasets, uploads=uploads)


@pytest.fixture(autouse=True)
def sent(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Ids of the jobs handed to the broker (nothing is really sent)."""
    ids: list[int] = []
    monkeypatch.setattr("lifecycle_app.jobs.services._enqueue", ids.append)
    return ids


def client_for(user: User | None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


@pytest.fixture
def client(owner: User) -> Client:
    return client_for(owner)


def stage_sample(
    project: Project,
    user: User,
    storage: Storage,
    *,
    filename: str = SAMPLE.name,
    data: bytes = SAMPLE_BYTES,
) -> StagedUpload:
    """Stage an upload through the service, as the upload view does with its temp file."""
    incoming = storage.uploads / f"incoming-{secrets.token_hex(4)}"
    incoming.write_bytes(data)
    return dataset_stage_file(project=project, user=user, path=incoming, filename=filename)


def make_dataset(
    project: Project,
    user: User,
    storage: Storage,
    *,
    seed: int = 42,
    profile_model: CatalogModel | None = None,
    name: str = "Dialogues",
) -> Dataset:
    staged = stage_sample(project, user, storage)
    mapping = Mapping(**{**MAPPING.__dict__, "seed": seed})
    return dataset_create_from_staged(
        project=project,
        user=user,
        staged=staged,
        mapping=mapping,
        name=name,
        profile_model=profile_model,
    )


def upload(
    client: Client,
    project: Project,
    *,
    filename: str = SAMPLE.name,
    data: bytes | None = SAMPLE_BYTES,
    **fields: str,
) -> Any:
    payload: dict[str, Any] = {"name": "", "text": "", **fields}
    if data is not None:
        payload["file"] = SimpleUploadedFile(filename, data)
    return client.post(reverse("dataset_upload", args=[project.slug]), payload)


def staged_url(project: Project, token: str) -> str:
    return reverse("dataset_staged", args=[project.slug, token])


def token_from(response: Any, project: Project) -> str:
    assert response.status_code == 302, response.content.decode()[:2000]
    match = re.fullmatch(
        re.escape(reverse("dataset_list", args=[project.slug])) + r"uploads/([\w-]+)/",
        response["Location"],
    )
    assert match, response["Location"]
    return match.group(1)


def mapping_data(**overrides: str) -> dict[str, str]:
    data = {
        "name": "Dialogue summaries",
        "input_field": "dialogue",
        "target_field": "summary",
        "train": "0.8",
        "validation": "0.1",
        "test": "0.1",
        "seed": "42",
        "action": "save",
    }
    data.update(overrides)
    return data


def upload_and_save(client: Client, project: Project, **overrides: str) -> Dataset:
    token = token_from(upload(client, project), project)
    response = client.post(staged_url(project, token), mapping_data(**overrides))
    assert response.status_code == 302, response.content.decode()[:2000]
    dataset_id = int(response["Location"].rstrip("/").rsplit("/", 1)[1])
    return Dataset.objects.get(id=dataset_id)


def body(response: Any) -> bytes:
    """The whole body. A streamed one (downloads) is read to the end, which makes the test
    client close it; closing it again would fire request_finished a second time, and that
    closes the test's database connection on PostgreSQL."""
    if response.streaming:
        return b"".join(response.streaming_content)
    return bytes(response.content)


def splits_of(path: Path) -> list[str]:
    return [json.loads(line)["split"] for line in path.read_text().splitlines()]


# --- Access: every dataset URL --------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    name: str
    methods: tuple[str, ...]
    scope: str  # "project", "staged" or "dataset": what the URL names besides the project
    query: str = ""

    def url(self, project: Project, token: str, dataset_id: int) -> str:
        args: list[Any] = [project.slug]
        if self.scope == "staged":
            args.append(token)
        elif self.scope == "dataset":
            args.append(dataset_id)
        return reverse(self.name, args=args) + self.query

    def __str__(self) -> str:
        return self.name + (f"[{self.query.split('=')[1]}]" if self.query else "")


ROUTES = [
    Route("dataset_list", ("GET",), "project"),
    Route("dataset_upload", ("POST",), "project"),
    Route("dataset_staged", ("GET", "POST"), "staged"),
    Route("dataset_staged_discard", ("POST",), "staged"),
    Route("dataset_detail", ("GET",), "dataset"),
    Route("dataset_rename", ("POST",), "dataset"),
    Route("dataset_delete", ("GET", "POST"), "dataset"),
    Route("dataset_download", ("GET",), "dataset", "?file=original"),
    Route("dataset_download", ("GET",), "dataset", "?file=clean"),
]


def _params(routes: list[Route], *, methods: tuple[str, ...] = ("GET", "POST")) -> list[Any]:
    return [
        pytest.param(route, method, id=f"{route}-{method}")
        for route in routes
        for method in route.methods
        if method in methods
    ]


ROUTE_METHODS = _params(ROUTES)
STAGED_ROUTE_METHODS = _params([r for r in ROUTES if r.scope == "staged"])
DATASET_ROUTE_METHODS = _params([r for r in ROUTES if r.scope == "dataset"])
GET_ROUTES = _params(ROUTES, methods=("GET",))
POST_ROUTES = _params(ROUTES, methods=("POST",))
WRONG_METHODS = [
    pytest.param(route, method, id=f"{route}-{method}")
    for route in ROUTES
    if not route.query.endswith("clean")  # the same view as ?file=original
    for method in ("GET", "POST", "PUT", "DELETE")
    if method not in route.methods
]


def payload(route: Route) -> dict[str, Any]:
    """What a real form would post to the route, so a leak would change something."""
    if route.name == "dataset_upload":
        return {"file": SimpleUploadedFile(SAMPLE.name, SAMPLE_BYTES), "name": "Sneaky"}
    if route.name == "dataset_staged":
        return mapping_data()
    if route.name == "dataset_rename":
        return {"name": "Renamed by someone else"}
    return {}


def request(client: Client, route: Route, method: str, url: str) -> Any:
    if method == "GET":
        return client.get(url)
    return client.post(url, payload(route))


@dataclass
class World:
    """A project holding one staged upload and one saved dataset, and a snapshot of both."""

    project: Project
    staged: StagedUpload
    dataset: Dataset
    storage: Storage

    def url(self, route: Route, *, token: str | None = None, dataset_id: int | None = None) -> str:
        return route.url(
            self.project,
            token or self.staged.token,
            dataset_id if dataset_id is not None else self.dataset.id,
        )

    def assert_untouched(self) -> None:
        assert self.staged.path.exists()
        assert (self.storage.datasets / "staged" / f"{self.staged.token}.json").exists()
        dataset = Dataset.objects.get(id=self.dataset.id)
        assert dataset.name == self.dataset.name
        assert dataset.original_path.is_file()
        assert dataset.clean_path.is_file()
        assert Dataset.objects.filter(project=self.project).count() == 1
        assert not Job.objects.exists()


@pytest.fixture
def world(project: Project, owner: User, storage: Storage) -> World:
    staged = stage_sample(project, owner, storage)
    dataset = make_dataset(project, owner, storage)
    return World(project=project, staged=staged, dataset=dataset, storage=storage)


@pytest.mark.parametrize(("route", "method"), ROUTE_METHODS)
def test_it_answers_404_to_an_outsider(
    route: Route, method: str, world: World, outsider: User
) -> None:
    response = request(client_for(outsider), route, method, world.url(route))

    body(response)
    assert response.status_code == 404
    world.assert_untouched()


@pytest.mark.parametrize(("route", "method"), ROUTE_METHODS)
def test_it_redirects_an_anonymous_user_to_login(route: Route, method: str, world: World) -> None:
    response = request(client_for(None), route, method, world.url(route))

    assert response.status_code == 302
    assert response["Location"].startswith(f"{reverse(django_settings.LOGIN_URL)}?next=")
    world.assert_untouched()


@pytest.mark.parametrize(("route", "method"), STAGED_ROUTE_METHODS)
def test_it_answers_404_for_another_projects_staged_upload_addressed_through_this_project(
    route: Route, method: str, world: World, owner: User, storage: Storage
) -> None:
    # The owner is a member of both projects: only the scoping can refuse this.
    other = make_project(owner, name="Another project")
    foreign = stage_sample(other, owner, storage)

    response = request(client_for(owner), route, method, world.url(route, token=foreign.token))

    assert response.status_code == 404
    assert foreign.path.exists()
    assert (storage.datasets / "staged" / f"{foreign.token}.json").exists()
    world.assert_untouched()


@pytest.mark.parametrize("token", ["no-such-token", "a" * 65, "dot.dot"])
def test_it_answers_404_for_a_staged_token_that_does_not_exist(
    token: str, project: Project, client: Client
) -> None:
    assert client.get(staged_url(project, token)).status_code == 404


@pytest.mark.parametrize(("route", "method"), DATASET_ROUTE_METHODS)
def test_it_answers_404_for_another_projects_dataset_addressed_through_this_project(
    route: Route, method: str, world: World, owner: User, storage: Storage
) -> None:
    other = make_project(owner, name="Another project")
    foreign = make_dataset(other, owner, storage, name="Foreign")

    response = request(client_for(owner), route, method, world.url(route, dataset_id=foreign.id))

    body(response)
    assert response.status_code == 404
    foreign.refresh_from_db()
    assert foreign.name == "Foreign"
    assert foreign.original_path.is_file()
    assert foreign.clean_path.is_file()
    world.assert_untouched()


@pytest.mark.parametrize(("route", "method"), DATASET_ROUTE_METHODS)
def test_it_answers_404_for_a_dataset_id_that_does_not_exist(
    route: Route, method: str, world: World, owner: User
) -> None:
    for dataset_id in (world.dataset.id + 1000, 0, 2**63):
        response = request(
            client_for(owner), route, method, world.url(route, dataset_id=dataset_id)
        )
        assert response.status_code == 404, dataset_id
    world.assert_untouched()


@pytest.mark.parametrize(("route", "method"), GET_ROUTES)
def test_it_lets_a_viewer_read_every_page(
    route: Route, method: str, world: World, teammate: User
) -> None:
    response = client_for(teammate).get(world.url(route))

    body(response)
    assert response.status_code == 200
    world.assert_untouched()


@pytest.mark.parametrize(("route", "method"), POST_ROUTES)
def test_it_forbids_a_viewer_to_post(
    route: Route, method: str, world: World, teammate: User, storage: Storage
) -> None:
    before = storage.files()

    response = client_for(teammate).post(world.url(route), payload(route))

    assert response.status_code == 403
    world.assert_untouched()
    assert storage.files() == before


def test_a_viewer_sees_no_upload_form_nor_rename_and_delete(world: World, teammate: User) -> None:
    viewer = client_for(teammate)

    listing = viewer.get(world.url(ROUTES[0])).content.decode()
    detail = viewer.get(world.url(ROUTES[4])).content.decode()

    assert "Viewers cannot upload datasets." in listing
    assert 'enctype="multipart/form-data"' not in listing
    assert reverse("dataset_rename", args=[world.project.slug, world.dataset.id]) not in detail
    assert "Delete this dataset" not in detail


@pytest.mark.parametrize(("route", "method"), WRONG_METHODS)
def test_it_answers_405_to_a_method_the_view_does_not_accept(
    route: Route, method: str, world: World, owner: User
) -> None:
    client = client_for(owner)

    response = getattr(client, method.lower())(world.url(route))

    assert response.status_code == 405
    world.assert_untouched()


# --- The happy path: upload, check, save ----------------------------------------------------


def test_an_uploaded_file_is_checked_mapped_split_and_saved(
    client: Client,
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    storage: Storage,
    sent: list[int],
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    response = upload(client, project)
    token = token_from(response, project)
    assert len(storage.staged_files()) == 2  # the data and its sidecar
    assert not list(storage.uploads.iterdir())  # the streamed temp file was moved

    page = client.get(staged_url(project, token))
    content = page.content.decode()
    assert page.status_code == 200
    assert "<th>dialogue</th>" in content
    assert "<th>summary</th>" in content
    assert "Lantern Bistro" in content  # the first row, previewed
    assert 'data-testid="validation-report"' in content
    assert "181 valid, none dropped." in content
    assert 'value="save"' in content
    assert not Dataset.objects.exists()

    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(staged_url(project, token), mapping_data())

    dataset = Dataset.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("dataset_detail", args=[project.slug, dataset.id])
    assert dataset.project == project
    assert dataset.created_by == owner
    assert dataset.name == "Dialogue summaries"
    assert dataset.original_filename == SAMPLE.name
    assert dataset.format == "jsonl"
    assert (dataset.input_field, dataset.target_field) == ("dialogue", "summary")
    assert dataset.total_rows == dataset.valid_rows == SAMPLE_ROWS
    assert dataset.split_seed == 42
    assert dataset.split_fractions == [0.8, 0.1, 0.1]
    assert dataset.split_counts == {"train": 145, "validation": 18, "test": 18}
    assert sum(dataset.split_counts.values()) == SAMPLE_ROWS
    assert dataset.size_bytes == len(SAMPLE_BYTES)
    folder = storage.datasets / str(project.id)
    assert dataset.original_path.parent == folder
    assert dataset.clean_path.parent == folder
    assert dataset.original_path.read_bytes() == SAMPLE_BYTES
    assert len(dataset.clean_path.read_text().splitlines()) == SAMPLE_ROWS
    assert storage.staged_files() == []
    assert sorted(storage.files()) == sorted([dataset.original_path, dataset.clean_path])

    job = Job.objects.get()
    assert job.kind == JobKind.PROFILE
    assert job.status == JobStatus.QUEUED
    assert job.dataset == dataset
    assert job.base_model == tiny_model
    assert job.created_by == owner
    assert job.params == {"dataset_id": dataset.id, "model_ref": "tiny"}
    assert job.progress_total == SAMPLE_ROWS
    # Enqueued only once the transaction commits.
    assert sent == []
    assert len(callbacks) == 1
    callbacks[0]()
    assert sent == [job.id]

    # The staged upload is gone: its page and a second save answer 404.
    assert client.get(staged_url(project, token)).status_code == 404
    assert client.post(staged_url(project, token), mapping_data()).status_code == 404
    assert Dataset.objects.count() == 1


def test_saving_from_htmx_redirects_the_whole_page(
    client: Client, project: Project, storage: Storage
) -> None:
    token = token_from(upload(client, project), project)

    response = client.post(staged_url(project, token), mapping_data(), headers=HTMX)

    dataset = Dataset.objects.get()
    assert response.status_code == 200
    assert response["HX-Redirect"] == reverse("dataset_detail", args=[project.slug, dataset.id])


def test_checking_a_mapping_from_htmx_renders_only_the_mapping_fragment(
    client: Client, project: Project
) -> None:
    token = token_from(upload(client, project), project)

    response = client.post(staged_url(project, token), mapping_data(action="check"), headers=HTMX)

    content = response.content.decode()
    assert response.status_code == 200
    assert content.lstrip().startswith('<div id="mapping">')
    assert "<html" not in content
    assert "181 valid, none dropped." in content
    assert not Dataset.objects.exists()


def test_a_saved_dataset_without_any_model_gets_no_profile_job(
    client: Client, project: Project, sent: list[int]
) -> None:
    dataset = upload_and_save(client, project)

    assert not Job.objects.exists()
    content = client.get(reverse("dataset_detail", args=[project.slug, dataset.id])).content
    assert "No profile yet" in content.decode()


def test_the_profile_job_uses_the_projects_chosen_model(
    client: Client, project: Project, tiny_model: CatalogModel
) -> None:
    from lifecycle_app.projects.services import stage_step_save

    chosen = CatalogModel.objects.create(slug="chosen", name="Chosen model", source="tiny")
    stage_step_save(
        project=project, stage_key="select", step_slug="model", answers={"base_model": "chosen"}
    )

    dataset = upload_and_save(client, project)

    assert Job.objects.get(dataset=dataset).base_model == chosen


# --- Detail, downloads, rename, delete ---------------------------------------------------------


@pytest.fixture
def dataset(project: Project, owner: User, storage: Storage, tiny_model: CatalogModel) -> Dataset:
    return make_dataset(project, owner, storage, profile_model=tiny_model)


def test_the_detail_page_shows_the_summary_mapping_split_and_profile_job(
    client: Client, project: Project, dataset: Dataset
) -> None:
    response = client.get(reverse("dataset_detail", args=[project.slug, dataset.id]))

    content = response.content.decode()
    job = Job.objects.get(dataset=dataset)
    assert response.status_code == 200
    assert "181 valid, none dropped." in content
    assert "<code>dialogue</code> → <code>summary</code>" in content
    assert "train 145 · validation 18 · test 18 (random: seed 42" in content
    assert f"Profile job #{job.id}" in content
    assert 'hx-trigger="every 1s"' in content  # polls while the profile job is active


def test_the_detail_page_draws_histograms_once_profiled(
    client: Client, project: Project, dataset: Dataset
) -> None:
    hist: dict[str, Any] = {"min": 1, "max": 9, "mean": 4.0, "p50": 4.0, "p95": 8.0}
    hist |= {"edges": [0.0, 4.5, 9.0], "counts": [100, 81]}
    dataset.profile = {"input_tokens": hist, "target_tokens": hist, "over_context": 0}
    dataset.save()
    Job.objects.filter(dataset=dataset).update(status=JobStatus.SUCCEEDED)

    content = client.get(reverse("dataset_detail", args=[project.slug, dataset.id])).content

    text = content.decode()
    assert 'data-histogram="input-hist"' in text
    assert 'id="input-hist"' in text
    assert 'hx-trigger="every 1s"' not in text


def test_download_original_returns_the_exact_uploaded_bytes(
    client: Client, project: Project, dataset: Dataset
) -> None:
    url = reverse("dataset_download", args=[project.slug, dataset.id])

    response = client.get(url, {"file": "original"})

    assert response.status_code == 200
    assert body(response) == SAMPLE_BYTES
    assert response["Content-Disposition"] == f'attachment; filename="{SAMPLE.name}"'
    # No ?file= means the original too.
    assert body(client.get(url)) == SAMPLE_BYTES


def test_download_clean_returns_json_lines_with_a_split_per_row(
    client: Client, project: Project, dataset: Dataset
) -> None:
    url = reverse("dataset_download", args=[project.slug, dataset.id])

    response = client.get(url, {"file": "clean"})

    assert response.status_code == 200
    assert "dialogue_summaries.clean.jsonl" in response["Content-Disposition"]
    records = [json.loads(line) for line in body(response).decode().splitlines()]
    assert len(records) == SAMPLE_ROWS
    assert all(set(r) == {"input", "target", "split", "line"} for r in records)
    counts = {s: sum(r["split"] == s for r in records) for s in ("train", "validation", "test")}
    assert counts == dataset.split_counts
    assert records[0]["input"].startswith("#Person1#: Good afternoon, Lantern Bistro.")


@pytest.mark.parametrize("which", ["../../secret_key", "stored", ""])
def test_download_of_an_unknown_file_kind_is_404(
    which: str, client: Client, project: Project, dataset: Dataset
) -> None:
    url = reverse("dataset_download", args=[project.slug, dataset.id])

    assert client.get(url, {"file": which}).status_code == 404


def test_download_of_a_file_missing_from_storage_is_404(
    client: Client, project: Project, dataset: Dataset
) -> None:
    dataset.clean_path.unlink()
    url = reverse("dataset_download", args=[project.slug, dataset.id])

    assert client.get(url, {"file": "clean"}).status_code == 404


def test_rename_changes_the_name_and_returns_to_the_dataset(
    client: Client, project: Project, dataset: Dataset
) -> None:
    response = client.post(
        reverse("dataset_rename", args=[project.slug, dataset.id]), {"name": "  Bistro calls  "}
    )

    assert response.status_code == 302
    assert response["Location"] == reverse("dataset_detail", args=[project.slug, dataset.id])
    dataset.refresh_from_db()
    assert dataset.name == "Bistro calls"


def test_rename_to_an_empty_name_shows_an_error(
    client: Client, project: Project, dataset: Dataset
) -> None:
    response = client.post(reverse("dataset_rename", args=[project.slug, dataset.id]), {"name": ""})

    assert response.status_code == 200
    assert "This field is required." in response.content.decode()
    dataset.refresh_from_db()
    assert dataset.name == "Dialogues"


def test_delete_asks_first_then_removes_the_row_and_both_files(
    client: Client,
    project: Project,
    dataset: Dataset,
    storage: Storage,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    url = reverse("dataset_delete", args=[project.slug, dataset.id])
    paths = [dataset.original_path, dataset.clean_path]

    confirm = client.get(url)

    assert confirm.status_code == 200
    assert "Delete “Dialogues”?" in confirm.content.decode()
    assert Dataset.objects.filter(id=dataset.id).exists()
    assert all(p.exists() for p in paths)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url)

    assert response.status_code == 302
    assert response["Location"] == reverse("dataset_list", args=[project.slug])
    assert not Dataset.objects.filter(id=dataset.id).exists()
    assert not any(p.exists() for p in paths)
    assert storage.files() == []
    # Jobs that used it are kept, without the dataset.
    assert Job.objects.get().dataset is None


def test_the_list_shows_saved_datasets(client: Client, project: Project, dataset: Dataset) -> None:
    content = client.get(reverse("dataset_list", args=[project.slug])).content.decode()

    assert reverse("dataset_detail", args=[project.slug, dataset.id]) in content
    assert "Dialogues" in content
    assert "145 / 18 / 18" in content


# --- Pasted rows, and the file-or-text rule -------------------------------------------------------


def test_pasted_rows_are_staged_like_a_file(
    client: Client, project: Project, storage: Storage
) -> None:
    response = upload(client, project, data=None, text=PASTED, name="Pasted tickets")

    token = token_from(response, project)
    content = client.get(staged_url(project, token)).content.decode()
    assert "<th>input</th>" in content
    assert "<th>target</th>" in content
    assert "3 valid, none dropped." in content
    assert not list(storage.uploads.iterdir())

    saved = client.post(
        staged_url(project, token),
        mapping_data(name="Pasted tickets", input_field="input", target_field="target"),
    )

    assert saved.status_code == 302
    dataset = Dataset.objects.get()
    assert dataset.name == "Pasted tickets"
    assert dataset.original_filename == "pasted.txt"
    assert dataset.valid_rows == 3
    assert dataset.original_path.read_text() == PASTED


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        pytest.param(
            {"text": PASTED}, "Upload a file or paste rows, not both.", id="file-and-text"
        ),
        pytest.param({"data": None}, "Choose a file to upload or paste some rows.", id="neither"),
        pytest.param(
            {"data": None, "text": "  \n "},
            "Choose a file to upload or paste some rows.",
            id="blank-text",
        ),
    ],
)
def test_it_needs_exactly_one_of_a_file_and_pasted_rows(
    fields: dict[str, Any], message: str, client: Client, project: Project, storage: Storage
) -> None:
    response = upload(client, project, **fields)

    assert response.status_code == 200
    assert message in response.content.decode()
    assert storage.files() == []
    assert not Dataset.objects.exists()


# --- Rejected uploads leave nothing behind -----------------------------------------------------


REJECTED = [
    pytest.param("empty.jsonl", b"", "The file is empty (0 bytes).", id="empty"),
    pytest.param(
        "data.csv",
        b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(range(256)) * 4,
        "This is a ZIP archive, not a CSV file: unzip it and upload the file inside.",
        id="zip-renamed-csv",
    ),
    pytest.param(
        "rows.csv",
        b"input,target\n",
        "The file has a header row (input, target) but no data rows.",
        id="header-only",
    ),
    pytest.param(
        "rows.jsonl",
        b"not json\nneither is this\n",
        "None of the 2 rows could be read as JSON Lines.",
        id="no-json",
    ),
    pytest.param(
        "latin1.csv",
        "input,target\ncaf\u00e9,ol\u00e9\n".encode("latin-1"),
        "Line 2 is not valid UTF-8: byte 0xE9",
        id="not-utf8",
    ),
]


@pytest.mark.parametrize(("filename", "data", "message"), REJECTED)
def test_a_rejected_file_is_explained_and_leaves_no_file_or_row(
    filename: str, data: bytes, message: str, client: Client, project: Project, storage: Storage
) -> None:
    response = upload(client, project, filename=filename, data=data)

    content = response.content.decode()
    assert response.status_code == 200
    assert message in content.replace("&#x27;", "'")
    assert "Upload a dataset" in content  # the list page, re-rendered with the error
    assert storage.files() == []
    assert not Dataset.objects.exists()


def test_a_file_whose_mapping_leaves_no_valid_row_cannot_be_saved(
    client: Client, project: Project, storage: Storage
) -> None:
    rows = b'{"input": "a", "target": ""}\n{"input": "b", "target": "  "}\n'
    token = token_from(upload(client, project, filename="rows.jsonl", data=rows), project)

    response = client.post(
        staged_url(project, token), mapping_data(input_field="input", target_field="target")
    )

    assert response.status_code == 200
    assert "None of the 2 rows can be used with this mapping." in response.content.decode()
    assert not Dataset.objects.exists()
    assert not (storage.datasets / str(project.id)).exists() or not any(
        (storage.datasets / str(project.id)).iterdir()
    )
    assert len(storage.staged_files()) == 2  # still there, to map differently or discard


# --- Size limit --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size",
    [
        pytest.param(100 * 1024, id="declared-length-over-limit"),
        pytest.param(40 * 1024, id="stream-passes-limit"),
    ],
)
def test_an_upload_over_the_limit_is_refused_and_not_stored(
    size: int, settings: Any, client: Client, project: Project, storage: Storage
) -> None:
    settings.DATASET_MAX_BYTES = 2048
    line = b'{"input": "' + b"x" * 80 + b'", "target": "y"}\n'
    data = line * (size // len(line) + 1)

    response = upload(client, project, filename="big.jsonl", data=data)

    content = response.content.decode()
    assert response.status_code == 200
    assert "limit and was not stored" in content
    assert "LIFECYCLE_DATASET_MAX_BYTES" in content
    assert storage.files() == []
    assert not Dataset.objects.exists()


def test_an_upload_over_the_limit_shows_no_choose_a_file_error(
    settings: Any, client: Client, project: Project
) -> None:
    settings.DATASET_MAX_BYTES = 2048

    response = upload(client, project, filename="big.jsonl", data=b"x" * 100 * 1024)

    assert "Choose a file to upload or paste some rows." not in response.content.decode()


def test_an_upload_over_a_sub_megabyte_limit_names_the_real_limit(
    settings: Any, client: Client, project: Project
) -> None:
    settings.DATASET_MAX_BYTES = 2048

    response = upload(client, project, filename="big.jsonl", data=b"x" * 100 * 1024)

    assert "0 MB" not in response.content.decode()


@pytest.fixture
def handler() -> Iterator[SizeLimitedUploadHandler]:
    handler = SizeLimitedUploadHandler(limit=100)
    yield handler
    if hasattr(handler, "file"):
        handler.file.close()


def test_the_handler_stops_once_the_running_total_passes_the_limit(
    handler: SizeLimitedUploadHandler, storage: Storage
) -> None:
    handler.handle_raw_input(None, {}, 1000, b"boundary")  # declared length is allowed
    handler.new_file("file", "big.jsonl", "application/octet-stream", None)
    temp = Path(handler.file.temporary_file_path())
    assert temp.parent == storage.uploads

    assert handler.receive_data_chunk(b"a" * 60, 0) is None
    handler.file.flush()
    assert temp.stat().st_size == 60
    assert handler.receive_data_chunk(b"b" * 40, 60) is None  # exactly at the limit
    with pytest.raises(StopUpload) as stopped:
        handler.receive_data_chunk(b"c" * 60, 100)

    assert stopped.value.connection_reset is False  # the rest of the body is drained
    assert handler.too_large
    assert handler.received == 160
    assert handler.file.closed
    assert not temp.exists()  # closing the temporary file deleted it
    assert storage.files() == []


def test_the_handler_refuses_a_declared_length_over_the_limit_before_any_byte(
    handler: SizeLimitedUploadHandler, storage: Storage
) -> None:
    handler.handle_raw_input(None, {}, 100 + MULTIPART_ALLOWANCE + 1, b"boundary")

    assert handler.too_large
    with pytest.raises(StopUpload):
        handler.new_file("file", "big.jsonl", "application/octet-stream", None)
    assert not hasattr(handler, "file")  # no temporary file was ever opened
    assert handler.received == 0
    assert storage.files() == []


def test_the_handler_accepts_a_file_within_the_limit(
    handler: SizeLimitedUploadHandler, storage: Storage
) -> None:
    handler.handle_raw_input(None, {}, 100 + MULTIPART_ALLOWANCE, b"boundary")
    handler.new_file("file", "ok.jsonl", "application/octet-stream", None)
    handler.receive_data_chunk(b"a" * 100, 0)

    uploaded = handler.file_complete(100)

    assert uploaded is not None
    assert uploaded.size == 100
    assert not handler.too_large


# --- Mapping errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param(
            {"train": "0.5", "validation": "0.3", "test": "0.1"},
            "The split fractions must add up to 1 (they add up to 0.9).",
            id="fractions",
        ),
        pytest.param(
            {"train": "0", "validation": "0.5", "test": "0.5"},
            "The train split cannot be empty.",
            id="empty-train",
        ),
        pytest.param(
            {"target_field": "dialogue"},
            "The target must be a different field from the input.",
            id="same-field",
        ),
        pytest.param(
            {"input_field": "question"},
            "Select a valid choice. question is not one of the available choices.",
            id="unknown-field",
        ),
        pytest.param(
            {"seed": "-1"}, "Ensure this value is greater than or equal to 0.", id="negative-seed"
        ),
    ],
)
def test_a_bad_mapping_is_explained_and_nothing_is_saved(
    overrides: dict[str, str],
    message: str,
    client: Client,
    project: Project,
    tiny_model: CatalogModel,
    storage: Storage,
    sent: list[int],
) -> None:
    token = token_from(upload(client, project), project)
    staged_before = storage.staged_files()

    response = client.post(staged_url(project, token), mapping_data(**overrides))

    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Dataset.objects.exists()
    assert not Job.objects.exists()
    assert sent == []
    assert storage.staged_files() == staged_before
    assert not (storage.datasets / str(project.id)).exists()


def test_the_same_seed_gives_the_same_split_and_another_seed_a_different_one(
    client: Client, project: Project
) -> None:
    first = upload_and_save(client, project, seed="42")
    second = upload_and_save(client, project, seed="42")
    third = upload_and_save(client, project, seed="7")

    assert first.clean_path != second.clean_path
    assert first.clean_path.read_bytes() == second.clean_path.read_bytes()
    assert splits_of(first.clean_path) == splits_of(second.clean_path)
    assert splits_of(third.clean_path) != splits_of(first.clean_path)
    # The sizes are fixed by the fractions alone.
    assert first.split_counts == second.split_counts == third.split_counts


# --- Staged uploads: discard and clean-up ------------------------------------------------------------


def test_discard_removes_the_staged_files(
    client: Client, project: Project, storage: Storage
) -> None:
    token = token_from(upload(client, project), project)
    assert len(storage.staged_files()) == 2

    response = client.post(reverse("dataset_staged_discard", args=[project.slug, token]))

    assert response.status_code == 302
    assert response["Location"] == reverse("dataset_list", args=[project.slug])
    assert storage.files() == []
    assert client.get(staged_url(project, token)).status_code == 404


def test_cleanup_removes_abandoned_staged_uploads_only(
    client: Client, project: Project, owner: User, storage: Storage, dataset: Dataset
) -> None:
    token = token_from(upload(client, project), project)
    saved = {dataset.original_path, dataset.clean_path}

    assert staged_cleanup() == 0  # younger than a day: kept
    assert len(storage.staged_files()) == 2

    assert staged_cleanup(max_age_s=0) == 1

    assert storage.staged_files() == []
    assert set(storage.files()) == saved  # saved datasets are not touched
    assert client.get(staged_url(project, token)).status_code == 404


# --- Query counts ----------------------------------------------------------------------------------


def _add_datasets(project: Project, n: int) -> None:
    for i in range(n):
        Dataset.objects.create(
            project=project,
            name=f"Dataset {i}",
            original_filename=f"d{i}.jsonl",
            stored_name=f"{secrets.token_hex(12)}.jsonl",
            format="jsonl",
            sha256="0" * 64,
            input_field="input",
            target_field="target",
            total_rows=10,
            valid_rows=10,
            split_fractions=[0.8, 0.1, 0.1],
            split_counts={"train": 8, "validation": 1, "test": 1},
            created_by=UserFactory.create(),
        )


def test_the_list_needs_the_same_number_of_queries_for_3_or_10_datasets(
    client: Client,
    project: Project,
    django_assert_max_num_queries: Callable[..., Any],
) -> None:
    url = reverse("dataset_list", args=[project.slug])
    _add_datasets(project, 3)
    client.get(url)  # warm the session and caches
    with CaptureQueriesContext(connection) as three:
        response = client.get(url)
    assert response.content.decode().count("Dataset ") >= 3

    _add_datasets(project, 7)
    with django_assert_max_num_queries(len(three.captured_queries)):
        response = client.get(url)

    assert response.content.decode().count("<tr>") == 11  # header + 10 rows
