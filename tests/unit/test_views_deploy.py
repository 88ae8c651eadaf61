"""The Application-integration pages: export form, trade-off table, deploy, download,
API tokens and the integration checklist."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from lifecycle_app.models import (
    ApiToken,
    CatalogModel,
    Job,
    JobKind,
    JobStatus,
    Membership,
    ModelVariant,
    Project,
    Role,
    VariantKind,
)
from tests.factories import JobFactory

STEP = ("integrate", "deploy")
MEASURED = {
    "settings": {"rows": 20, "split": "test", "dataset": "Dialogues", "max_new_tokens": 32},
    "parent": {
        "size_bytes": 538 * 2**20,
        "load_s": 0.4,
        "tokens_per_s": 15.0,
        "latency_ms": 2100.0,
        "latency_tokens": 32,
        "scores": {"rouge1": 0.30, "rouge2": 0.10, "rougeL": 0.25},
    },
    "variant": {
        "size_bytes": 160 * 2**20,
        "load_s": 0.9,
        "tokens_per_s": 36.0,
        "latency_ms": 890.0,
        "latency_tokens": 32,
        "scores": {"rouge1": 0.28, "rouge2": 0.11, "rougeL": 0.24},
    },
}


@pytest.fixture
def editor(project: Project) -> User:
    user = User.objects.create_user("erin")
    Membership.objects.create(project=project, user=user, role=Role.EDITOR)
    return user


def _variant(
    project: Project, owner: User, model: CatalogModel, kind: str, tmp_path: Path
) -> ModelVariant:
    job = JobFactory.create(
        project=project, created_by=owner, kind=JobKind.EXPORT, status=JobStatus.SUCCEEDED
    )
    bundle = tmp_path / f"bundle-{job.id}.zip"
    bundle.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    return ModelVariant.objects.create(
        project=project,
        job=job,
        kind=kind,
        parent=model,
        path=str(tmp_path),
        bundle_path=str(bundle),
        measurements=MEASURED,
    )


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_step_shows_the_tradeoff_against_the_parent(
    project: Project, owner: User, tiny_model: CatalogModel, tmp_path: Path
) -> None:
    _variant(project, owner, tiny_model, VariantKind.INT8, tmp_path)

    response = _client(owner).get(reverse("wizard_step", args=[project.slug, *STEP]))

    html = response.content.decode()
    assert response.status_code == 200
    assert "int8 dynamic quantization" in html
    assert "160.0 MB" in html and "30% of 538.0 MB" in html and "(−70%)" in html
    assert "2.40× parent" in html
    assert "-0.0200" in html and "+0.0100" in html  # ROUGE-1 down, ROUGE-2 up
    assert 'data-testid="deploy"' in html and 'data-testid="download"' in html


TEMPLATE = {
    "id": 1,
    "name": "Summaries",
    "version": 3,
    "instruction": "Summarize the dialogue in one sentence.",
    "example_format": "Dialogue:\n{input}\nSummary: {target}",
    "body": "{instruction}\n\n{examples}Dialogue:\n{input}\nSummary:",
    "use_chat_template": True,
    "shot_style": "chat",
}


def test_the_serving_panel_shows_the_v1_call_and_the_template_it_applies(
    project: Project, owner: User, tiny_model: CatalogModel, tmp_path: Path
) -> None:
    from lifecycle_app.stages.deploy.serving import API_EXAMPLE_INPUT

    url = reverse("wizard_step", args=[project.slug, *STEP])
    before = _client(owner).get(url).content.decode()
    assert "/v1/chat/completions" in before and '"model": "MODEL_ID"' in before
    assert 'data-testid="served-template"' not in before  # nothing deployed yet

    variant = _variant(project, owner, tiny_model, VariantKind.SAFETENSORS, tmp_path)
    Job.objects.filter(id=variant.job_id).update(
        params={"kind": "safetensors", "template": TEMPLATE}
    )
    _client(owner).post(reverse("variant_deploy", args=[project.slug, variant.id]))
    html = _client(owner).get(url).content.decode()

    assert "http://testserver/v1</code>" in html
    assert f'"model": "variant-{variant.id}"' in html  # what /v1/models lists
    assert "<strong>Summaries v3</strong>" in html
    filled = f"Summarize the dialogue in one sentence.\n\nDialogue:\n{API_EXAMPLE_INPUT}\nSummary:"
    assert f'<pre class="output" data-testid="served-prompt">{filled}</pre>' in html
    assert "/api/projects/" in html and "Summarize: A:" not in html  # the user's text only


def test_the_htmx_request_gets_the_wizard_fragment(project: Project, owner: User) -> None:
    response = _client(owner).get(
        reverse("wizard_step", args=[project.slug, *STEP]), HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    assert b"<html" not in response.content and b'id="wizard"' in response.content


def test_starting_an_export_queues_a_job_and_returns_to_the_step(
    project: Project,
    editor: User,
    tiny_model: CatalogModel,
    enqueued: list[int],
    django_capture_on_commit_callbacks: Any,
) -> None:
    tiny_model.weights_present = True
    tiny_model.save()

    with django_capture_on_commit_callbacks(execute=True):
        response = _client(editor).post(
            reverse("wizard_step", args=[project.slug, *STEP]),
            {"base_model": tiny_model.slug, "kind": "int8", "eval_rows": 5, "max_new_tokens": 8},
        )

    job = Job.objects.get(kind=JobKind.EXPORT)
    assert response.status_code == 302
    assert response["Location"].endswith("/integrate/deploy/#exports")
    assert job.params["kind"] == "int8" and job.params["dataset_id"] is None
    assert job.progress_total == 6 and enqueued == [job.id]


def test_deploying_marks_one_variant_per_project(
    project: Project, editor: User, owner: User, tiny_model: CatalogModel, tmp_path: Path
) -> None:
    first = _variant(project, owner, tiny_model, VariantKind.INT8, tmp_path)
    second = _variant(project, owner, tiny_model, VariantKind.SAFETENSORS, tmp_path)
    client = _client(editor)

    client.post(reverse("variant_deploy", args=[project.slug, first.id]))
    client.post(reverse("variant_deploy", args=[project.slug, second.id]))

    assert list(ModelVariant.objects.filter(deployed_at__isnull=False)) == [second]
    page = client.get(reverse("wizard_step", args=[project.slug, *STEP])).content.decode()
    assert page.count('data-testid="deployed-badge"') == 1
    overview = client.get(reverse("project_detail", args=[project.slug])).content.decode()
    assert 'data-testid="deployed-model"' in overview


def test_an_onnx_variant_can_be_deployed(
    project: Project, owner: User, tiny_model: CatalogModel, tmp_path: Path
) -> None:
    """onnxruntime serves ONNX variants (workers/ml/export/onnx_runtime.py)."""
    variant = _variant(project, owner, tiny_model, VariantKind.ONNX_INT8, tmp_path)
    response = _client(owner).post(reverse("variant_deploy", args=[project.slug, variant.id]))
    assert response.status_code == 302
    assert ModelVariant.objects.get(deployed_at__isnull=False) == variant


def test_the_bundle_downloads_as_a_streamed_zip(
    project: Project, teammate: User, owner: User, tiny_model: CatalogModel, tmp_path: Path
) -> None:
    variant = _variant(project, owner, tiny_model, VariantKind.INT8, tmp_path)

    response = _client(teammate).get(reverse("variant_download", args=[project.slug, variant.id]))

    assert response.status_code == 200 and response.streaming
    assert f"{project.slug}-int8-{variant.job_id}.zip" in response["Content-Disposition"]
    assert b"".join(response.streaming_content).startswith(b"PK")  # type: ignore[attr-defined]


def test_a_new_token_is_shown_once(project: Project, owner: User) -> None:
    client = _client(owner)
    url = reverse("wizard_step", args=[project.slug, *STEP])

    response = client.post(reverse("api_token_create", args=[project.slug]), {"name": "staging"})
    first = client.get(url).content.decode()
    second = client.get(url).content.decode()

    assert response.status_code == 302
    token = ApiToken.objects.get()
    assert 'data-testid="new-token"' in first and token.prefix in first
    assert 'data-testid="new-token"' not in second
    assert "staging" in second


def test_owners_revoke_tokens_and_editors_cannot(
    project: Project, owner: User, editor: User
) -> None:
    _client(owner).post(reverse("api_token_create", args=[project.slug]), {"name": "x"})
    token = ApiToken.objects.get()
    url = reverse("api_token_revoke", args=[project.slug, token.id])

    assert _client(editor).post(url).status_code == 403
    assert _client(owner).post(url).status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_the_checklist_saves_each_item_and_shows_on_the_project_page(
    project: Project, editor: User
) -> None:
    data: dict[str, Any] = {}
    for key in ("retrieval", "reasoning", "monitoring", "fallback", "infrastructure"):
        data[f"{key}_status"] = "planned"
        data[f"{key}_notes"] = ""
    data["monitoring_status"] = "done"
    data["monitoring_notes"] = "Log every answer; weekly ROUGE on sampled traffic."
    client = _client(editor)

    response = client.post(reverse("wizard_step", args=[project.slug, "integrate", "app"]), data)

    assert response.status_code == 302
    overview = client.get(reverse("project_detail", args=[project.slug])).content.decode()
    assert "weekly ROUGE on sampled traffic" in overview
    assert "Done" in overview and "Planned" in overview
    step = client.get(reverse("wizard_step", args=[project.slug, "integrate", "app"]))
    assert "weekly ROUGE" in step.content.decode()
    assert "status-complete" in overview or "Complete" in overview


def test_an_invalid_checklist_status_rerenders_with_errors(project: Project, editor: User) -> None:
    response = _client(editor).post(
        reverse("wizard_step", args=[project.slug, "integrate", "app"]),
        {"retrieval_status": "maybe"},
    )
    assert response.status_code == 200
    assert b"Select a valid choice" in response.content


def test_a_project_with_exported_candidates_can_be_deleted(
    project: Project, owner: User, tiny_model: CatalogModel, tmp_path: Path
) -> None:
    from lifecycle_app.wizard.deletion import project_delete

    candidate = CatalogModel.objects.create(
        slug="cand", name="Candidate", source="local", project=project, parent=tiny_model
    )
    job = JobFactory.create(
        project=project,
        created_by=owner,
        kind=JobKind.EXPORT,
        status=JobStatus.SUCCEEDED,
        base_model=candidate,
    )
    exported = CatalogModel.objects.create(
        slug="cand-int8", name="Candidate int8", source="local", project=project, parent=candidate
    )
    ModelVariant.objects.create(
        project=project,
        job=job,
        kind=VariantKind.INT8,
        parent=candidate,
        candidate=exported,
        path=str(tmp_path),
    )

    project_delete(project=project, actor=owner)

    assert not ModelVariant.objects.exists()
    assert not CatalogModel.objects.filter(project__isnull=False).exists()


def test_the_step_page_queries_do_not_grow_with_variants(
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    tmp_path: Path,
    django_assert_max_num_queries: Any,
) -> None:
    client = _client(owner)
    url = reverse("wizard_step", args=[project.slug, *STEP])
    _variant(project, owner, tiny_model, VariantKind.INT8, tmp_path)
    client.get(url)
    with django_assert_max_num_queries(40) as one:
        client.get(url)
    for _ in range(4):
        _variant(project, owner, tiny_model, VariantKind.SAFETENSORS, tmp_path)
    with django_assert_max_num_queries(len(one.captured_queries)):
        client.get(url)
