from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from lifecycle_app.models import GenerationOutput, Project
from tests.factories import JobFactory


@pytest.mark.parametrize(
    "model", ["project", "membership", "stage", "catalogmodel", "job", "generationoutput"]
)
def test_every_record_has_admin_list_and_change_pages(
    client: Client, project: Project, model: str
) -> None:
    admin = User.objects.create_superuser("root", "root@example.com", "pw-Very-Long-123")
    client.force_login(admin)
    job = JobFactory.create(project=project, created_by=project.owner)
    GenerationOutput.objects.create(job=job, prompt="Hello")
    response = client.get(reverse(f"admin:lifecycle_app_{model}_changelist"))
    assert response.status_code == 200
    obj = response.context["cl"].result_list[0]
    assert (
        client.get(reverse(f"admin:lifecycle_app_{model}_change", args=[obj.pk])).status_code == 200
    )


def test_an_enormous_job_id_in_the_url_is_404_not_500(client: Client, project: Project) -> None:
    client.force_login(project.owner)
    url = f"/p/{project.slug}/jobs/99999999999999999999999/"
    assert client.get(url).status_code == 404
