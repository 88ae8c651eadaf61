"""Adding a model to the catalog: the form's checks in the web process, the worker's read."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from lifecycle_app.catalog.models import CatalogModel
from lifecycle_app.jobs.models import Job, JobKind, JobStatus
from lifecycle_app.jobs.services import job_claim
from lifecycle_app.projects.models import Project
from workers.ml.bundled import build_tiny


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random Llama as a local model folder (built once for this module)."""
    return build_tiny(tmp_path_factory.mktemp("models") / "m")


@pytest.fixture
def model_folder(tmp_path: Path, tiny_dir: Path) -> Callable[..., Path]:
    """A copy of the tiny model's folder, its config.json changed or replaced."""

    def make(config: Any = None, *, raw: str | None = None, name: str = "copy") -> Path:
        folder = tmp_path / name
        shutil.copytree(tiny_dir, folder)
        if raw is not None:
            (folder / "config.json").write_text(raw, encoding="utf-8")
        elif config is not None:
            (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
        return folder

    return make


def tiny_config(tiny_dir: Path, **changes: Any) -> dict[str, Any]:
    config: dict[str, Any] = json.loads((tiny_dir / "config.json").read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    return config


# Nothing reaches a broker; tests that check enqueueing take `enqueued` (tests/unit/conftest.py).
pytestmark = pytest.mark.usefixtures("enqueued")


@pytest.fixture
def client(owner: User) -> Client:
    client = Client()
    client.force_login(owner)
    return client


def add_url(project: Project) -> str:
    return reverse("model_add", args=[project.slug])


def post_add(client: Client, project: Project, source: str, location: str) -> Any:
    return client.post(add_url(project), {"source": source, "location": location, "name": ""})


def assert_refused(response: Any, *fragments: str) -> None:
    """The form is shown again with the message on `location`; nothing was added or queued."""
    assert response.status_code == 200
    errors = response.context["form"].errors.get("location", [])
    assert errors, response.context["form"].errors
    content = response.content.decode()
    for fragment in fragments:
        assert any(fragment in e for e in errors), errors
    for e in errors:
        assert escape(e) in content
    assert not Job.objects.exists()
    assert not CatalogModel.objects.exclude(slug="tiny").exists()


# --- Refused in the web process ---------------------------------------------------------


def test_the_add_page_shows_the_form(client: Client, project: Project) -> None:
    response = client.get(add_url(project))

    assert response.status_code == 200
    assert "Add a model to the catalog" in response.content.decode()


def test_a_path_that_does_not_exist_is_refused(
    client: Client, project: Project, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere"

    response = post_add(client, project, "local", str(missing))

    assert_refused(response, f"There is no folder at {missing}.")


def test_a_file_is_refused(client: Client, project: Project, tmp_path: Path) -> None:
    file = tmp_path / "model.safetensors"
    file.write_bytes(b"not a folder")

    response = post_add(client, project, "local", str(file))

    assert_refused(response, "is a file; give the folder that holds config.json")


def test_a_folder_without_config_json_is_refused(
    client: Client, project: Project, tmp_path: Path
) -> None:
    (tmp_path / "empty").mkdir()

    response = post_add(client, project, "local", str(tmp_path / "empty"))

    assert_refused(response, "has no config.json, so it is not a Hugging Face model folder")


def test_a_config_that_is_not_json_is_refused(
    client: Client, project: Project, model_folder: Callable[..., Path]
) -> None:
    folder = model_folder(raw="{model_type: llama,")

    response = post_add(client, project, "local", str(folder))

    assert_refused(response, "config.json is not valid JSON (line 1")


def test_a_config_without_model_type_is_refused(
    client: Client, project: Project, model_folder: Callable[..., Path], tiny_dir: Path
) -> None:
    folder = model_folder(tiny_config(tiny_dir, model_type=None))

    response = post_add(client, project, "local", str(folder))

    assert_refused(response, "config.json has no model_type, so its architecture is unknown")


def test_a_config_that_is_a_json_list_is_refused(
    client: Client, project: Project, model_folder: Callable[..., Path]
) -> None:
    folder = model_folder(["llama"])

    response = post_add(client, project, "local", str(folder))

    assert_refused(response, "has no model_type")


def test_a_model_that_needs_remote_code_is_refused(
    client: Client, project: Project, model_folder: Callable[..., Path], tiny_dir: Path
) -> None:
    auto_map = {"AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}
    folder = model_folder(tiny_config(tiny_dir, auto_map=auto_map))

    response = post_add(client, project, "local", str(folder))

    assert_refused(response, "needs custom code from its authors (auto_map", "trust_remote_code")


def test_a_hub_id_that_is_not_cached_is_refused_as_not_downloadable(
    client: Client, project: Project
) -> None:
    response = post_add(client, project, "hub", "nobody/not-a-model")

    assert_refused(
        response,
        "The model 'nobody/not-a-model' is not on this machine",
        "cannot download models",
    )


@pytest.mark.parametrize("hub_id", ["not an id", "owner/name/extra", "../etc/passwd", "-x/y"])
def test_a_malformed_hub_id_is_refused(client: Client, project: Project, hub_id: str) -> None:
    response = post_add(client, project, "hub", hub_id)

    assert_refused(response, f"'{hub_id}' is not a Hugging Face id (owner/name).")


def test_a_model_already_in_the_catalog_is_refused(
    client: Client, project: Project, tiny_dir: Path
) -> None:
    CatalogModel.objects.create(
        slug="mine", name="My tiny copy", source="local", location=str(tiny_dir.resolve())
    )

    response = post_add(client, project, "local", str(tiny_dir))

    assert response.status_code == 200
    errors = response.context["form"].errors["location"]
    assert errors == ["This model is already in the catalog as My tiny copy."]
    assert "This model is already in the catalog as My tiny copy." in response.content.decode()
    assert not Job.objects.exists()
    assert CatalogModel.objects.count() == 1


# --- Accepted: a job, then the worker reads the config ----------------------------------


def test_a_valid_folder_queues_one_register_job_and_the_worker_adds_the_model(
    client: Client,
    project: Project,
    owner: User,
    tiny_dir: Path,
    enqueued: list[int],
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            add_url(project), {"source": "local", "location": str(tiny_dir), "name": ""}
        )

    assert response.status_code == 302
    assert response["Location"] == reverse("wizard_step", args=[project.slug, "select", "model"])
    job = Job.objects.get()
    assert job.kind == JobKind.REGISTER_MODEL
    assert job.status == JobStatus.QUEUED
    assert job.project == project
    assert job.created_by == owner
    assert job.params == {"source": "local", "location": str(tiny_dir.resolve()), "name": "m"}
    assert enqueued == [job.id]
    assert not CatalogModel.objects.exists()

    from workers.tasks.base import JobRun
    from workers.tasks.register_model import _register_model

    claimed = job_claim(job_id=job.id, worker="t")
    assert claimed is not None
    _register_model(claimed, JobRun(job_id=claimed.id, attempt=claimed.attempt))

    model = CatalogModel.objects.get()
    assert (model.source, model.location, model.name) == ("local", str(tiny_dir.resolve()), "m")
    assert model.family == "decoder-only"
    assert model.architecture == "LlamaForCausalLM"
    assert model.n_params == 106816
    assert model.shape["n_params"] == 106816
    assert set(model.shape["linear_modules"]) >= {"q_proj", "v_proj"}
    assert model.weights_present is True
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    assert job.result == {"base_model": model.slug}


def test_a_valid_folder_with_a_name_uses_it(
    client: Client, project: Project, tiny_dir: Path, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            add_url(project),
            {"source": "local", "location": str(tiny_dir), "name": "Tiny llama (local)"},
        )

    assert response.status_code == 302
    assert Job.objects.get().params["name"] == "Tiny llama (local)"


def test_an_unsupported_architecture_fails_on_the_worker_and_adds_nothing(
    client: Client,
    project: Project,
    model_folder: Callable[..., Path],
    tiny_dir: Path,
    django_capture_on_commit_callbacks: Any,
) -> None:
    from workers.ml.errors import ModelNotAvailable
    from workers.tasks.base import JobRun
    from workers.tasks.register_model import _register_model

    folder = model_folder(tiny_config(tiny_dir, model_type="frobnicator"), name="frob")
    with django_capture_on_commit_callbacks(execute=True):
        response = post_add(client, project, "local", str(folder))
    assert response.status_code == 302  # the form cannot tell: it reads plain JSON only
    job = Job.objects.get()
    claimed = job_claim(job_id=job.id, worker="t")
    assert claimed is not None

    with pytest.raises(ModelNotAvailable, match="architecture this version of transformers"):
        _register_model(claimed, JobRun(job_id=claimed.id, attempt=claimed.attempt))

    assert not CatalogModel.objects.exists()


# --- Access -------------------------------------------------------------------------------


def test_an_outsider_gets_404(project: Project, outsider: User, tiny_dir: Path) -> None:
    client = Client()
    client.force_login(outsider)

    assert client.get(add_url(project)).status_code == 404
    response = post_add(client, project, "local", str(tiny_dir))

    assert response.status_code == 404
    assert not Job.objects.exists()
    assert not CatalogModel.objects.exists()


def test_a_viewer_gets_403_on_post(project: Project, teammate: User, tiny_dir: Path) -> None:
    client = Client()
    client.force_login(teammate)

    response = post_add(client, project, "local", str(tiny_dir))

    assert response.status_code == 403
    assert not Job.objects.exists()
    assert not CatalogModel.objects.exists()
