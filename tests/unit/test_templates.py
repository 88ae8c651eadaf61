from __future__ import annotations

from django.test import Client
from django.urls import reverse

from lifecycle_app.models import Project


def test_the_overview_names_each_step_status_in_words(client: Client, project: Project) -> None:
    client.force_login(project.owner)
    html = client.get(reverse("project_detail", args=[project.slug])).content.decode()
    assert "Not started" in html
    # (no step is "Coming later" any more: every stage has its forms)
    assert "Notstarted" not in html
    assert "0 of 0 done" not in html
