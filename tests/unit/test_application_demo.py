"""load_demo's application part: an app on the bundled model with hybrid retrieval and
the sample question set, idempotent."""

from __future__ import annotations

import json
from pathlib import Path

from django.contrib.auth.models import User

from lifecycle_app.models import AppEvalSet, ApplicationVersion, CatalogModel, Project
from lifecycle_app.stages.integrate.app.demo import DEMO_SET, demo_application
from tests.factories import CatalogModelFactory


def test_the_demo_app_and_questions_load_once(
    project: Project, owner: User, tmp_path: Path
) -> None:
    bundled: CatalogModel = CatalogModelFactory(  # type: ignore[assignment]
        slug="smollm2-135m-instruct", name="SmolLM2", source="bundled", is_test_model=False
    )
    questions = tmp_path / "knowledge_questions.jsonl"
    questions.write_text(
        "\n".join(
            json.dumps({"question": f"Q{i}?", "answer": f"A{i}", "document": "handbook.md"})
            for i in range(3)
        )
    )
    said = demo_application(project=project, user=owner, questions_file=questions)
    assert len(said) == 2
    v = ApplicationVersion.objects.get()
    assert (v.model, v.retrieval, v.number) == (bundled, "hybrid", 1)
    assert "{context}" in v.template and "{input}" in v.template
    s = AppEvalSet.objects.get(name=DEMO_SET)
    assert s.questions.filter(status="accepted").count() == 3
    assert demo_application(project=project, user=owner, questions_file=questions) == []


def test_without_a_bundled_model_or_questions_it_says_so(
    project: Project, owner: User, tmp_path: Path
) -> None:
    said = demo_application(project=project, user=owner, questions_file=tmp_path / "none.jsonl")
    assert "run prepare_models" in said[0] and "no none.jsonl shipped" in said[1]
    assert not ApplicationVersion.objects.exists()


def test_the_sample_knowledge_base_uploads_once_and_queues_its_index(
    project: Project, owner: User, enqueued: list[int], settings: object, tmp_path: Path
) -> None:
    from lifecycle_app.management.commands.load_demo import SAMPLES
    from lifecycle_app.models import Job, JobKind, KnowledgeDocument
    from lifecycle_app.stages.integrate.app.demo import demo_knowledge

    settings.VAR_DIR = tmp_path  # type: ignore[attr-defined]
    CatalogModelFactory(slug="smollm2-135m-instruct", name="SmolLM2", source="bundled")
    folder = SAMPLES / "knowledge"
    files = {p.name for p in folder.iterdir() if p.name != "LICENSE.md"}
    said = demo_knowledge(project=project, user=owner, folder=folder)
    assert set(KnowledgeDocument.objects.values_list("name", flat=True)) == files
    assert Job.objects.filter(kind=JobKind.INDEX).count() == 1 and "queued" in said[-1]
    assert demo_knowledge(project=project, user=owner, folder=folder) == []
