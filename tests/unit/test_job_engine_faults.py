"""The job engine's fault handling, in-process: attempt bookkeeping, monotonic progress,
re-sending lost messages, failure messages, Run again and Resume."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from lifecycle_app.jobs import services as jobs_services
from lifecycle_app.models import Job, JobKind, JobStatus, Project
from tests.factories import JobFactory
from workers.ml.params import GenerateParams
from workers.tasks.failures import describe_failure


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    from workers.celery import app

    calls: list[int] = []

    def send_task(name: str, args: list[Any], queue: str) -> None:
        calls.append(args[0])

    monkeypatch.setattr(app, "send_task", send_task)
    return calls


def test_a_takeover_keeps_the_first_start_and_logs_each_attempt(
    project: Project, settings: Any
) -> None:
    job = JobFactory.create(project=project)
    first = jobs_services.job_claim(job_id=job.id, worker="a")
    assert first is not None
    long_ago = timezone.now() - timedelta(seconds=settings.JOB_STALE_AFTER_S + 5)
    Job.objects.filter(id=job.id).update(heartbeat_at=long_ago, started_at=long_ago)

    second = jobs_services.job_claim(job_id=job.id, worker="b")

    assert second is not None and second.attempt == 2
    assert second.started_at == long_ago  # the job's first start, not this attempt's
    spans = second.attempt_spans
    assert [(s["attempt"], s.get("worker"), s.get("outcome")) for s in spans] == [
        (1, "a", "lost"),
        (2, "b", None),
    ]
    jobs_services.job_succeed(job_id=job.id, result={})
    spans = Job.objects.get(id=job.id).attempt_spans
    assert spans[1]["outcome"] == "succeeded" and spans[1]["duration_s"] is not None


def test_progress_never_goes_back_within_a_phase_and_a_success_shows_it_all(
    project: Project,
) -> None:
    job = JobFactory.create(project=project, progress_total=100)
    jobs_services.job_claim(job_id=job.id, worker="a")

    jobs_services.job_progress(job_id=job.id, done=60, total=100)
    jobs_services.job_progress(job_id=job.id, done=40, total=100)  # resumed from step 40
    assert Job.objects.get(id=job.id).progress_done == 60
    jobs_services.job_progress(job_id=job.id, done=2, total=6)  # a new phase starts over
    assert Job.objects.get(id=job.id).progress_done == 2
    jobs_services.job_progress(job_id=job.id, done=5, total=6)
    jobs_services.job_succeed(job_id=job.id, result={})

    assert Job.objects.get(id=job.id).progress_done == 6


def test_a_resumed_training_run_s_live_figures_do_not_pull_progress_back(
    project: Project,
) -> None:
    """The stalled attempt got to step 42; its successor resumed from the checkpoint at 40."""
    from lifecycle_app.stages.finetune.runs import finetune_live

    job = JobFactory.create(project=project, progress_total=400)
    jobs_services.job_claim(job_id=job.id, worker="a")
    finetune_live(job_id=job.id, step=42, total=400, live={}, line="step 42/400")
    finetune_live(job_id=job.id, step=41, total=400, live={}, line="step 41/400")
    job = Job.objects.get(id=job.id)
    assert job.progress_done == 42
    assert job.result["log"] == ["step 42/400", "step 41/400"]  # the log still says where it is
    finetune_live(job_id=job.id, step=43, total=400, live={}, line="step 43/400")
    assert Job.objects.get(id=job.id).progress_done == 43
    finetune_live(job_id=job.id, step=3, total=10, live={}, line="step 3/10")  # a new total
    assert Job.objects.get(id=job.id).progress_done == 3


def test_the_reaper_re_sends_a_job_whose_message_was_lost_with_a_growing_wait(
    project: Project, sent: list[int], settings: Any
) -> None:
    settings.JOB_RESEND_AFTER_S = 60
    now = timezone.now()
    lost = JobFactory.create(project=project)
    Job.objects.filter(id=lost.id).update(enqueued_at=now - timedelta(seconds=61), sends=1)
    fresh = JobFactory.create(project=project)
    Job.objects.filter(id=fresh.id).update(enqueued_at=now - timedelta(seconds=10), sends=1)
    resent_once = JobFactory.create(project=project)  # the second wait is twice as long
    Job.objects.filter(id=resent_once.id).update(enqueued_at=now - timedelta(seconds=90), sends=2)

    assert jobs_services.job_resend_lost() == [lost.id]
    assert jobs_services.job_resend_lost() == []  # sent again just now: no duplicate

    assert sent == [lost.id]
    assert Job.objects.get(id=lost.id).sends == 2


def test_disk_full_reads_as_such_even_from_torch_s_zip_writer(tmp_path: Path) -> None:
    import torch

    target = tmp_path / "weights.pt"
    target.symlink_to("/dev/full")
    with pytest.raises(Exception) as caught:
        torch.save({"w": torch.zeros(64, 64)}, target)

    message, detail = describe_failure(caught.value, storage=tmp_path)

    assert message.startswith("The worker ran out of disk space")
    assert str(tmp_path) in message
    assert type(caught.value).__name__ in detail


def test_a_permission_error_names_the_visible_folder_not_a_hidden_temporary_one(
    tmp_path: Path,
) -> None:
    hidden = tmp_path / "jobs" / "7" / "attempt-1" / "run" / ".tmp-step-20" / "optimizer.pt"
    error = PermissionError(13, "Permission denied", str(hidden))

    message, _ = describe_failure(error, storage=tmp_path)

    assert f"not allowed to write to {tmp_path / 'jobs' / '7' / 'attempt-1' / 'run'}" in message
    assert ".tmp" not in message and "Errno" not in message


def _messages(response: Any) -> str:
    from django.contrib.messages import get_messages

    return " ".join(str(m) for m in get_messages(response.wsgi_request))


def _failed(project: Project, owner: User, **fields: Any) -> Job:
    job = JobFactory.create(project=project, created_by=owner, **fields)
    Job.objects.filter(id=job.id).update(
        status=JobStatus.FAILED, error="boom", finished_at=timezone.now(), attempt=1
    )
    return Job.objects.get(id=job.id)


def test_run_again_makes_a_new_job_with_the_same_settings(
    client: Client,
    project: Project,
    owner: User,
    sent: list[int],
    django_capture_on_commit_callbacks: Any,
) -> None:
    failed = _failed(project, owner)
    client.force_login(owner)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("job_run_again", args=[project.slug, failed.id]))

    new = Job.objects.exclude(id=failed.id).get()
    assert response.status_code == 302
    assert response["Location"] == reverse("job_detail", args=[project.slug, new.id])
    same_settings = GenerateParams(**failed.params).model_dump()
    assert (new.kind, new.params, new.base_model_id) == (
        failed.kind,
        same_settings,
        failed.base_model_id,
    )
    assert new.status == JobStatus.QUEUED and new.created_by == owner
    assert sent == [new.id]
    assert Job.objects.get(id=failed.id).status == JobStatus.FAILED  # kept as it was


def test_run_again_is_refused_to_a_viewer_and_for_a_running_job(
    client: Client, project: Project, owner: User, teammate: User
) -> None:
    failed = _failed(project, owner)
    running = JobFactory.create(project=project, status=JobStatus.RUNNING)
    client.force_login(owner)

    response = client.post(reverse("job_run_again", args=[project.slug, running.id]), follow=True)
    assert "Only a failed or cancelled job can be run again." in response.content.decode()

    from lifecycle_app.models import Membership, Role

    Membership.objects.filter(project=project, user=teammate).update(role=Role.VIEWER)
    client.force_login(teammate)
    refused = client.post(reverse("job_run_again", args=[project.slug, failed.id]))
    assert refused.status_code in (403, 404)
    assert Job.objects.count() == 2


def test_resume_needs_a_checkpoint_and_then_requeues_the_same_job(
    client: Client,
    project: Project,
    owner: User,
    sent: list[int],
    settings: Any,
    tmp_path: Path,
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.JOBS_DIR = tmp_path / "jobs"
    failed = _failed(project, owner, kind=JobKind.FINETUNE, params={})
    client.force_login(owner)
    url = reverse("job_resume", args=[project.slug, failed.id])

    page = client.post(url)
    assert page.status_code == 302
    assert "saved no checkpoint" in _messages(page)
    assert Job.objects.get(id=failed.id).status == JobStatus.FAILED

    (tmp_path / "jobs" / str(failed.id) / "attempt-1" / "run" / "checkpoints" / "step-20").mkdir(
        parents=True
    )
    with django_capture_on_commit_callbacks(execute=True):
        with_checkpoint = _messages(client.post(url))

    job = Job.objects.get(id=failed.id)
    assert "resumes from its last checkpoint" in with_checkpoint
    assert job.status == JobStatus.QUEUED and job.error == "" and job.finished_at is None
    assert sent == [failed.id]


@pytest.mark.django_db
def test_a_session_paused_inside_a_transaction_is_ended_by_the_stale_period() -> None:
    """A worker paused inside a fenced write holds the Job row's lock: PostgreSQL ends its
    session once idle in the transaction for the stale period, so the reaper is not
    blocked (tests/test_job_faults.py pauses a worker at a random point)."""
    from django.conf import settings as django_settings
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's setting")
    with connection.cursor() as cursor:
        cursor.execute("SHOW idle_in_transaction_session_timeout")
        shown = cursor.fetchone()[0]
    expected = django_settings.JOB_STALE_AFTER_S
    assert shown in (f"{expected}s", f"{expected // 60}min", f"{expected * 1000}ms"), shown
