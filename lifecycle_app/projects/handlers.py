"""The protocol of a step handler: the web side of one wizard step.

The step declaration (steps.py) is pure data; each available step names a `StepHandler`
subclass that lives with its stage (`lifecycle_app/stages/<stage>/step.py`). The generic step
view (lifecycle_app/wizard/views.py) asks the handler for everything that differs between
steps, so adding a step never edits a view. The wizard resolves the dotted paths on first use
(lifecycle_app/wizard/handlers.py), so nothing below it imports a form.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib.auth.models import User
from django.http import HttpRequest

from lifecycle_app.common.forms import StepForm
from lifecycle_app.projects.models import Project, Stage

if TYPE_CHECKING:
    from lifecycle_app.jobs.models import Job


class StepHandler:
    """What a step's page needs beyond its declaration. Subclass once per step.

    A step either saves its answers (the default: a valid POST stores `form.answers()` and
    moves to the next step) or, with `starts_job`, starts a job (`start_job`) and goes to
    the job's page (`job_url`).
    """

    form_class: type[StepForm]
    # The step's page; the generic one renders the form field by field.
    template: str = "wizard/step.html"
    # A valid POST starts a job instead of saving answers.
    starts_job: bool = False
    # The form also reads GET parameters and re-renders as they change (live planners).
    live: bool = False

    def initial(
        self, *, project: Project, answers: dict[str, Any], stages: dict[str, Stage]
    ) -> dict[str, Any]:
        """The form's initial values: by default the saved answers."""
        return dict(answers)

    def extra(
        self,
        *,
        request: HttpRequest | None,
        project: Project,
        stages: dict[str, Stage],
        form: StepForm | None,
    ) -> dict[str, Any]:
        """What the step's template shows beside its form. `request` is None on share pages."""
        return {}

    def start_job(self, *, form: Any, project: Project, user: User) -> Job | None:
        """Start the job a valid form asks for; None (with errors added to the form) when it
        cannot start. Raise JobLimitReached to have the limit's message shown."""
        raise NotImplementedError(f"{type(self).__name__} starts no job")

    def job_url(self, *, project: Project, job: Job) -> str:
        """Where to go once the job is queued."""
        raise NotImplementedError(f"{type(self).__name__} starts no job")
