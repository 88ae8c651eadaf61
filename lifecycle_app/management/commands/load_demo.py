from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand

from lifecycle_app.datasets import selectors as dataset_selectors
from lifecycle_app.datasets.models import Dataset
from lifecycle_app.datasets.services import Mapping, dataset_create_from_staged, dataset_stage_file
from lifecycle_app.projects.models import Project, StageKey
from lifecycle_app.projects.services import project_create, stage_step_save
from lifecycle_app.projects.steps import StepSlug
from lifecycle_app.stages.integrate.app.demo import demo_application, demo_knowledge
from lifecycle_app.stages.prompt import building as prompting
from lifecycle_app.stages.prompt.models import PromptTemplate
from lifecycle_app.stages.prompt.services import template_create

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
# (file, dataset name, input field, target field, classification)
SAMPLE_DATASETS = [
    ("dialogue_summaries.jsonl", "Everyday dialogues (sample)", "dialogue", "summary", False),
    ("support_intents.csv", "Support intents (sample)", "text", "label", True),
]

DEMO_USERNAME = "demo"
DEMO_PASSWORD = "lifecycle-demo"  # printed in the README; a local demo account only
DEMO_PROJECT = "Support ticket summaries"


class Command(BaseCommand):
    help = "Create the demo user and demo project (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        user, created = User.objects.get_or_create(username=DEMO_USERNAME)
        if created:
            user.set_password(DEMO_PASSWORD)
            user.save()
        if not Project.objects.filter(owner=user, name=DEMO_PROJECT).exists():
            project = project_create(
                owner=user,
                name=DEMO_PROJECT,
                description="Summarize customer support conversations into one line for the ticket queue.",
            )
            stage_step_save(
                project=project,
                stage_key=StageKey.SCOPE,
                step_slug=StepSlug.USE_CASE,
                answers={
                    "task_type": "summarization",
                    "use_case": "Support agents get a one-sentence summary of each customer chat so the queue can be triaged at a glance.",
                    "examples": [
                        {
                            "input": "Customer: My order #4411 arrived with a cracked screen. Agent: Sorry! I've sent a replacement, arriving Friday.",
                            "output": "Order #4411 arrived damaged; a replacement ships for Friday.",
                        },
                        {
                            "input": "Customer: I was charged twice this month. Agent: I see the duplicate charge and refunded it; allow 3-5 days.",
                            "output": "Duplicate monthly charge refunded; 3-5 days to appear.",
                        },
                        {
                            "input": "Customer: How do I reset my password? Agent: Use 'Forgot password' on the login page; the link lasts an hour.",
                            "output": "Customer asked how to reset a password; pointed to 'Forgot password'.",
                        },
                    ],
                    "success_metric": "rouge_l",
                    "metric_target": 0.35,
                    "max_latency_ms": 2000,
                    "max_cost_per_1k": None,
                    "privacy": "confidential",
                    "hardware": "cpu",
                },
            )
        project = Project.objects.get(owner=user, name=DEMO_PROJECT)
        self._load_samples(project, user)
        if not PromptTemplate.objects.filter(project=project).exists():
            suggestion = prompting.suggested_template(task_type="summarization", dataset=None)
            template_create(
                project=project,
                user=user,
                name=suggestion.pop("name"),
                fields=suggestion,
                note="Suggested starting point",
            )
        # The application stage: an app on the bundled model with hybrid retrieval and the
        # sample questions, after the sample knowledge base and its queued index job.
        for line in demo_knowledge(project=project, user=user, folder=SAMPLES / "knowledge"):
            self.stdout.write(line)
        for line in demo_application(
            project=project, user=user, questions_file=SAMPLES / "knowledge_questions.jsonl"
        ):
            self.stdout.write(line)
        self.stdout.write(
            self.style.SUCCESS(f"Demo ready: log in as '{DEMO_USERNAME}' / '{DEMO_PASSWORD}'.")
        )

    def _load_samples(self, project: Project, user: User) -> None:
        """Load the shipped sample datasets through the same path as an upload."""
        for filename, name, input_field, target_field, classification in SAMPLE_DATASETS:
            if Dataset.objects.filter(project=project, name=name).exists():
                continue
            tmp = Path(tempfile.mkdtemp(dir=settings.FILE_UPLOAD_TEMP_DIR)) / filename
            shutil.copyfile(SAMPLES / filename, tmp)
            staged = dataset_stage_file(project=project, user=user, path=tmp, filename=filename)
            tmp.parent.rmdir()
            dataset = dataset_create_from_staged(
                project=project,
                user=user,
                staged=staged,
                mapping=Mapping(
                    input_field=input_field,
                    target_field=target_field,
                    classification=classification,
                    seed=42,
                    fractions=(0.8, 0.1, 0.1),
                ),
                name=name,
                profile_model=dataset_selectors.profile_model_for(project=project),
            )
            self.stdout.write(f"  sample dataset '{name}': {dataset.summary}")
