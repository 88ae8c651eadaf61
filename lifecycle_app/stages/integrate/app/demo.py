"""The demo project's application: an app on the bundled model with hybrid retrieval over
the sample knowledge base, and the sample question set (load_demo calls this)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User

from lifecycle_app.catalog.models import CatalogModel, ModelSource
from lifecycle_app.projects.models import Project
from lifecycle_app.stages.integrate.app import evalsets, services
from lifecycle_app.stages.integrate.app.candidates import ModelOption
from lifecycle_app.stages.integrate.app.models import AppEvalSet, Application
from lifecycle_app.stages.integrate.knowledge.models import KnowledgeDocument
from lifecycle_app.stages.integrate.knowledge.selectors import knowledge_index_latest
from lifecycle_app.stages.integrate.knowledge.services import (
    knowledge_document_upload,
    knowledge_index_start,
)

DEMO_APP = "Office help desk"
DEMO_SET = "Sample knowledge questions"
DEMO_TEMPLATE = (
    "Answer the question using only the context below. If the context does not say, "
    "answer that you don't know.\n\nContext:\n{context}\n\nQuestion: {input}"
)


def demo_knowledge(*, project: Project, user: User, folder: Path) -> list[str]:
    """Upload the sample knowledge base (through the same path as an upload) and queue
    its index job when the project has no index yet (the worker builds it)."""
    said: list[str] = []
    have = set(KnowledgeDocument.objects.filter(project=project).values_list("name", flat=True))
    for path in sorted(folder.iterdir()):
        if path.name == "LICENSE.md" or path.name in have or not path.is_file():
            continue
        tmp = Path(tempfile.mkdtemp(dir=settings.FILE_UPLOAD_TEMP_DIR)) / path.name
        shutil.copyfile(path, tmp)
        knowledge_document_upload(project=project, user=user, path=tmp, filename=path.name)
        tmp.parent.rmdir()
        said.append(f"  knowledge document '{path.name}'")
    model = CatalogModel.objects.catalog().filter(source=ModelSource.BUNDLED).first()
    if knowledge_index_latest(project=project) is None and model is not None:
        index = knowledge_index_start(project=project, user=user, tokenizer_model=model)
        said.append(f"  knowledge index job #{index.job_id} queued (a worker builds it)")
    return said


def demo_application(*, project: Project, user: User, questions_file: Path) -> list[str]:
    """Create what is missing (idempotent); returns lines saying what was done."""
    said: list[str] = []
    model = CatalogModel.objects.catalog().filter(source=ModelSource.BUNDLED).first()
    if model is None:
        said.append("  no bundled model in the catalog (run prepare_models): no demo application")
    elif not Application.objects.filter(project=project, name=DEMO_APP).exists():
        option = ModelOption(f"base:{model.slug}", f"{model.name} (catalog)", "base", model=model)
        version = services.application_create(
            project=project,
            user=user,
            name=DEMO_APP,
            option=option,
            fields={
                "template": DEMO_TEMPLATE,
                "retrieval": "hybrid",
                "top_k": 3,
                "threshold": None,
                "cite": True,
                "reasoning": "none",
                "fallback_min_score": 0.3,
                "max_new_tokens": 96,
                "note": "Demo: hybrid retrieval over the sample knowledge base",
            },
        )
        said.append(f"  application '{version}' on {model.name}, hybrid retrieval")
    if not questions_file.is_file():
        said.append(f"  no {questions_file.name} shipped: no sample question set")
    elif not AppEvalSet.objects.filter(project=project, name=DEMO_SET).exists():
        parsed = evalsets.parse(questions_file.name, questions_file.read_bytes())
        if parsed.problems:
            raise ValueError(f"{questions_file}: {' '.join(parsed.problems)}")
        services.eval_set_create(
            project=project, user=user, name=DEMO_SET, rows=parsed.rows, source="sample"
        )
        said.append(f"  app evaluation set '{DEMO_SET}': {len(parsed.rows)} questions")
    return said
