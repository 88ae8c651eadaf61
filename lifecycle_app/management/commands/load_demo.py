from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand

from lifecycle_app.models import Project, StageKey
from lifecycle_app.services.projects import project_create, stage_step_save

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
                step_slug="use-case",
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
        self.stdout.write(
            self.style.SUCCESS(f"Demo ready: log in as '{DEMO_USERNAME}' / '{DEMO_PASSWORD}'.")
        )
