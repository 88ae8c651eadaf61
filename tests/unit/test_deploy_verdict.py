"""The trade-off table's verdict (Scope target and latency budget) and the warning on
dynamic int8 rows."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from lifecycle_app.models import (
    CatalogModel,
    JobKind,
    JobStatus,
    ModelVariant,
    Project,
    StageKey,
    VariantKind,
)
from lifecycle_app.projects.services import stage_step_save
from lifecycle_app.projects.steps import StepSlug
from lifecycle_app.stages.deploy import selectors
from lifecycle_app.stages.deploy.verdict import tradeoff_verdict
from tests.factories import JobFactory

PARENT = {
    "size_bytes": 538 * 2**20,
    "load_s": 0.4,
    "tokens_per_s": 15.0,
    "latency_ms": 2100.0,
    "latency_tokens": 32,
    "scores": {"rouge1": 0.21, "rougeL": 0.18},
}


def _variant(
    project: Project, owner: User, model: CatalogModel, kind: str, **mine: Any
) -> ModelVariant:
    job = JobFactory.create(
        project=project, created_by=owner, kind=JobKind.EXPORT, status=JobStatus.SUCCEEDED
    )
    variant = {**PARENT, **mine}
    return ModelVariant.objects.create(
        project=project,
        job=job,
        kind=kind,
        parent=model,
        path="/nowhere",
        measurements={"settings": {"rows": 24}, "parent": PARENT, "variant": variant},
    )


def _scope(project: Project, **answers: Any) -> dict[str, Any]:
    stage_step_save(
        project=project, stage_key=StageKey.SCOPE, step_slug=StepSlug.USE_CASE, answers=answers
    )
    return answers


def _table(project: Project, owner: User, tiny_model: CatalogModel) -> dict[str, ModelVariant]:
    return {
        "w8": _variant(
            project, owner, tiny_model, VariantKind.INT8_WEIGHT, tokens_per_s=13.0,
            latency_ms=2400.0, scores={"rouge1": 0.205, "rougeL": 0.18},
        ),
        "ort": _variant(
            project, owner, tiny_model, VariantKind.ONNX_INT8, tokens_per_s=30.0,
            latency_ms=1050.0, scores={"rouge1": 0.20, "rougeL": 0.17},
        ),
        "ort_fp32": _variant(
            project, owner, tiny_model, VariantKind.ONNX, tokens_per_s=22.0,
            latency_ms=1400.0, scores={"rouge1": 0.21, "rougeL": 0.18},
        ),
        "dyn": _variant(
            project, owner, tiny_model, VariantKind.INT8, tokens_per_s=38.0,
            latency_ms=840.0, scores={"rouge1": 0.06, "rougeL": 0.05},
        ),
    }  # fmt: skip


def test_the_verdict_is_the_fastest_variant_over_the_target_within_the_budget(
    project: Project, owner: User, tiny_model: CatalogModel
) -> None:
    v = _table(project, owner, tiny_model)
    rows = selectors.tradeoff_rows(project=project)
    scope = {"success_metric": "rouge_1", "metric_target": 0.2, "max_latency_ms": 2000}
    verdict = tradeoff_verdict(rows=rows, scope=scope)
    # dyn is fastest but under the target; ort beats ort_fp32; w8 is over the budget.
    assert verdict is not None and verdict.variant_id == v["ort"].id
    assert "0.2" in verdict.rule and "2000 ms" in verdict.rule
    flags = {r["variant"].id: (r["meets_quality"], r["meets_latency"]) for r in rows}
    assert flags[v["dyn"].id] == (False, True) and flags[v["w8"].id] == (True, False)

    tight = tradeoff_verdict(rows=rows, scope={**scope, "max_latency_ms": 1000})
    assert tight is not None and tight.variant_id is None and "too slow" in tight.headline
    high = tradeoff_verdict(rows=rows, scope={**scope, "metric_target": 0.5})
    assert high is not None and high.variant_id is None and "quality bar" in high.headline


def test_without_a_target_quality_must_stay_within_002_of_the_parent(
    project: Project, owner: User, tiny_model: CatalogModel
) -> None:
    v = _table(project, owner, tiny_model)
    rows = selectors.tradeoff_rows(project=project)
    verdict = tradeoff_verdict(rows=rows, scope={})
    assert verdict is not None and verdict.variant_id == v["ort"].id  # drops 0.01
    assert "within 0.02 of its parent" in verdict.rule and "no latency budget" in verdict.rule
    # A target on a metric the exports did not measure falls back to the same rule.
    other = tradeoff_verdict(rows=rows, scope={"success_metric": "bleu", "metric_target": 20})
    assert other is not None and other.variant_id == v["ort"].id


def test_the_page_shows_the_verdict_its_rule_and_the_dynamic_int8_warning(
    project: Project, owner: User, tiny_model: CatalogModel
) -> None:
    v = _table(project, owner, tiny_model)
    _scope(project, success_metric="rouge_1", metric_target=0.2, max_latency_ms=2000)
    client = Client()
    client.force_login(owner)
    html = client.get(
        reverse("wizard_step", args=[project.slug, "integrate", "deploy"])
    ).content.decode()
    assert 'data-testid="verdict"' in html and "Deploy the fastest variant" in html
    assert html.count('data-testid="recommended"') == 1
    row = html.split(f'data-variant="{v["ort"].id}"')[1].split("</tr>")[0]
    assert 'data-testid="recommended"' in row
    assert html.count('data-testid="quality-warning"') == 1
    warned = html.split(f'data-variant="{v["dyn"].id}"')[1].split("</tr>")[0]
    assert "halves quality on small models" in warned and "ROUGE-1 -0.150" in warned
    # Every kind, ONNX included, offers Deploy.
    assert html.count('data-testid="deploy"') == 4


def test_the_export_form_offers_every_method(project: Project, owner: User) -> None:
    client = Client()
    client.force_login(owner)
    html = client.get(
        reverse("wizard_step", args=[project.slug, "integrate", "deploy"])
    ).content.decode()
    for kind in ("safetensors", "int8_weight", "onnx", "onnx_int8", "int8"):
        assert f'value="{kind}"' in html


def test_the_dynamic_int8_warning_says_when_it_was_not_measured(
    project: Project, owner: User, tiny_model: CatalogModel
) -> None:
    from lifecycle_app.stages.deploy.verdict import quality_warning

    _variant(project, owner, tiny_model, VariantKind.INT8, scores={})
    (row,) = selectors.tradeoff_rows(project=project)
    warning = quality_warning(row)
    assert warning is not None and "not measured here" in warning
