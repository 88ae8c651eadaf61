"""Three hosts that share only PostgreSQL, Redis and an S3 server (issue 18).

A web process (gunicorn), a worker and a serving worker run as subprocesses, each with its
own empty LIFECYCLE_VAR_DIR (models, cache, jobs, uploads all under it) and
LIFECYCLE_STORAGE_URL pointing at moto's S3 server, started by this test on 127.0.0.1.
Every process loads tests/integration/audit_hook/sitecustomize.py: a PEP 578 audit hook
that refuses (PermissionError) and logs any file operation on another host's var folder,
so a process that tried to read another's disk would fail its job and leave a line in its
audit log. (chmod 000 proves nothing as root, and one uid per host would need the
repository and virtualenv readable by all of them; the hook sees every open(), listdir
and rename the Python side makes, in the pool children too.)

The journey: upload a dataset through the web over HTTP; fine-tune on the worker; SIGKILL
that worker once a checkpoint is in the store; a fresh worker with another empty var
folder resumes from the stored checkpoint (resumed_from_step > 0, exactly one artifact);
evaluate; export; deploy; answer the API through the web from the serving worker.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from lifecycle_app.models import Artifact, CatalogModel, Job, JobStatus, Project
from lifecycle_app.stages.deploy.models import ModelVariant
from lifecycle_app.stages.deploy.services import api_token_create, export_create, variant_deploy
from lifecycle_app.stages.evaluate import candidates as evaluating
from lifecycle_app.stages.evaluate.models import CandidateStatus, EvaluationCandidate
from lifecycle_app.stages.evaluate.services import evaluation_create
from lifecycle_app.stages.prompt.models import PromptTemplate
from tests.conftest import require_redis_and_postgres
from tests.integration.conftest import (
    ROOT,
    WorkerProcess,
    shared_worker_paused,
    start_worker,
    wait_for_job,
    worker_database_url,
)
from tests.integration.sample_data import SAMPLE, start_finetune
from tests.s3server import CREDENTIALS, make_bucket, moto_server
from workers.ml.params import EvaluateParams, ExportParams, GenerationSettings

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

BUCKET = "three-hosts"
STALE_AFTER_S = 5
MAX_STEPS = 24
CHECKPOINT_EVERY = 4
HOSTS = ("web", "worker", "worker2", "serve")


def _served_id(web_url: str, token: str) -> str:
    listed = requests.get(
        web_url + "/v1/models", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert listed.status_code == 200, listed.text
    return str(listed.json()["data"][0]["id"])


def _v1_chat(web_url: str, token: str, model: str) -> requests.Response:
    return requests.post(
        web_url + "/v1/chat/completions",
        json={
            "model": model,
            "messages": [{"role": "user", "content": "A: Lunch? B: Sure."}],
            "max_tokens": 4,
        },
        headers={"Authorization": f"Bearer {token}"},
        timeout=120,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Hosts:
    def __init__(self, root: Path, endpoint: str) -> None:
        self.root = root
        self.endpoint = endpoint
        for name in HOSTS:
            (root / name / "var").mkdir(parents=True)
        self.procs: list[WorkerProcess] = []
        self.web: subprocess.Popen[bytes] | None = None
        self.web_url = ""

    def var(self, name: str) -> Path:
        return self.root / name / "var"

    def env(self, name: str) -> dict[str, str]:
        others = [str(self.var(n)) for n in HOSTS if n != name]
        return {
            **CREDENTIALS,
            "AWS_ENDPOINT_URL": self.endpoint,
            "LIFECYCLE_STORAGE_URL": f"s3://{BUCKET}/studio",
            # Every host signs sessions with one key (the README says so for deployments).
            "SECRET_KEY": settings.SECRET_KEY,
            "LIFECYCLE_VAR_DIR": str(self.var(name)),
            "LIFECYCLE_MODELS_DIR": str(self.var(name) / "models"),
            "LIFECYCLE_JOB_STALE_AFTER_S": str(STALE_AFTER_S),
            "LIFECYCLE_STORAGE_TIMEOUT_S": "10",
            "LIFECYCLE_SHOW_TEST_MODELS": "true",
            "PYTHONPATH": os.pathsep.join([str(ROOT / "tests/integration/audit_hook"), str(ROOT)]),
            "LIFECYCLE_AUDIT_DENY": os.pathsep.join(others),
            "LIFECYCLE_AUDIT_LOG": str(self.root / f"audit-{name}.log"),
        }

    def prepare_models(self, *names: str) -> None:
        """What `manage.py prepare_models --only tiny` does at a worker host's start (the
        image's commands run it), without touching the catalog rows of this test; the
        hosts in parallel."""
        code = (
            "import os; from pathlib import Path; from workers.ml import bundled; "
            "bundled.build_tiny(Path(os.environ['LIFECYCLE_MODELS_DIR']) / bundled.TINY_DIRNAME)"
        )
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", code], cwd=ROOT, env={**os.environ, **self.env(name)}
            )
            for name in names
        ]
        assert [proc.wait(timeout=300) for proc in procs] == [0] * len(names)

    def worker(self, name: str, queues: str) -> WorkerProcess:
        # start_worker puts LIFECYCLE_VAR_DIR at <log dir>/var: the host's own folder.
        proc = start_worker(
            self.root / name, queues=queues, name=f"-{name}", env=self.env(name), purge=False
        )
        self.procs.append(proc)
        return proc

    def start_web(self) -> None:
        port = _free_port()
        env = {
            **os.environ,
            **self.env("web"),
            "DATABASE_URL": worker_database_url(),
            "DEBUG": "true",
            "PYTHONUNBUFFERED": "1",
        }
        log = (self.root / "web.log").open("wb")
        self.web = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "lifecycle_app.wsgi",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "1",
                "--threads",
                "4",
                "--timeout",
                "120",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.web_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(self.web_url + "/accounts/login/", timeout=10)
                return
            except requests.RequestException:
                if self.web.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("The web process did not start:\n" + self.log("web"))
                time.sleep(0.2)

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop()
        if self.web is not None:
            self.web.terminate()
            try:
                self.web.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.web.pid, signal.SIGKILL)


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[Hosts]:
    require_redis_and_postgres()
    with shared_worker_paused(), moto_server() as endpoint:
        make_bucket(endpoint, BUCKET)
        hosts = Hosts(tmp_path, endpoint)
        try:
            yield hosts
        finally:
            hosts.stop()


def _s3(hosts: Hosts) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=hosts.endpoint,
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
    )


def _keys(hosts: Hosts, prefix: str) -> list[str]:
    pages = _s3(hosts).get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def _stored_checkpoints(hosts: Hosts, job_id: int) -> list[int]:
    found = re.compile(r"/run/checkpoints/step-(\d+)/\.manifest\.json$")
    return sorted(
        int(m.group(1)) for k in _keys(hosts, f"studio/jobs/{job_id}/") if (m := found.search(k))
    )


def _upload_through_the_web(hosts: Hosts, project: Project, owner: User) -> int:
    django_client = Client()
    django_client.force_login(owner)  # a session row in the shared database
    http = requests.Session()
    http.cookies.set("sessionid", django_client.cookies["sessionid"].value)
    upload_url = hosts.web_url + reverse("dataset_upload", args=[project.slug])
    page = http.get(hosts.web_url + reverse("dataset_list", args=[project.slug]), timeout=30)
    assert page.status_code == 200, page.text[:500]
    token = re.search(r'"X-CSRFToken": "([^"]+)"', page.text)
    assert token, page.text[:500]
    headers = {"X-CSRFToken": token.group(1), "Referer": upload_url}
    with SAMPLE.open("rb") as fh:
        staged = http.post(
            upload_url,
            files={"file": (SAMPLE.name, fh)},
            data={"text": "", "name": "Dialogues"},
            headers=headers,
            allow_redirects=False,
            timeout=60,
        )
    assert staged.status_code == 302, staged.text[:2000]
    mapping_url = hosts.web_url + staged.headers["Location"]
    saved = http.post(
        mapping_url,
        data={
            "name": "Dialogues",
            "input_field": "dialogue",
            "target_field": "summary",
            "seed": "42",
            "train": "0.8",
            "validation": "0.1",
            "test": "0.1",
            "action": "save",
        },
        headers={**headers, "Referer": mapping_url},
        allow_redirects=False,
        timeout=60,
    )
    assert saved.status_code == 302, saved.text[:3000]
    dataset_id = int(re.findall(r"/(\d+)/?", saved.headers["Location"])[-1])
    return dataset_id


@pytest.mark.timeout(900)  # 4.5-5.5 min here (2 cores shared with other test runs)
def test_three_hosts_share_only_the_database_the_broker_and_the_store(
    hosts: Hosts, project: Project, owner: User, tiny_model: CatalogModel, tiny_folder: Path
) -> None:
    from workers.celery import app

    app.control.purge()
    started = time.monotonic()

    def phase(name: str) -> None:
        print(f"[three-hosts] {name} at {time.monotonic() - started:.1f} s", flush=True)

    hosts.start_web()
    hosts.prepare_models("worker", "worker2")  # each host builds its own copy
    first = hosts.worker("worker", "cpu,gpu")
    serving = hosts.worker("serve", "serve")

    phase("hosts started")
    # 1. A dataset uploaded through the web lands in the store, not on a worker's disk.
    dataset_id = _upload_through_the_web(hosts, project, owner)
    from lifecycle_app.datasets.models import Dataset

    dataset = Dataset.objects.get(id=dataset_id, project=project)
    stored = _keys(hosts, f"studio/datasets/{project.id}/")
    assert sorted(k.rsplit("/", 1)[1] for k in stored) == sorted(
        [dataset.stored_name, dataset.clean_path.name]
    )
    assert not list((hosts.var("web") / "datasets").glob(f"{project.id}/*"))

    phase("uploaded")
    # 2. Fine-tune on the first worker; SIGKILL it once a checkpoint is in the store.
    job = start_finetune(
        project, owner, tiny_model, dataset, max_steps=MAX_STEPS, checkpoint_every=CHECKPOINT_EVERY
    )
    template = PromptTemplate.objects.get(project=project, name="Summarize")
    wait_for_job(
        job.id,
        lambda j: not j.is_active or bool(_stored_checkpoints(hosts, job.id)),
        timeout=240,
        poll=0.5,
    )
    first.kill()
    killed = Job.objects.get(id=job.id)
    assert killed.status == JobStatus.RUNNING, killed.error
    stored_steps = _stored_checkpoints(hosts, job.id)
    assert stored_steps and stored_steps[-1] < MAX_STEPS

    phase("killed")
    # 3. A fresh worker with another empty var folder resumes from the stored checkpoint.
    while (time.time() - killed.heartbeat_at.timestamp()) <= STALE_AFTER_S + 0.5:  # type: ignore[union-attr]
        time.sleep(0.1)
    second = hosts.worker("worker2", "cpu,gpu")
    job = wait_for_job(job.id, timeout=180)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.attempt == 2 and job.worker == second.hostname
    resumed_from = job.result["summary"]["resumed_from_step"]
    assert resumed_from > 0 and resumed_from in stored_steps
    artifacts = list(Artifact.objects.filter(job=job))
    assert len(artifacts) == 1
    key = artifacts[0].path
    assert not os.path.isabs(key) and key.startswith(f"jobs/{job.id}/attempt-2/run/final")
    assert f"studio/{key}/.manifest.json" in _keys(hosts, f"studio/{key}/")
    deadline = time.monotonic() + 30  # removed just after the job is marked succeeded
    while _stored_checkpoints(hosts, job.id) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _stored_checkpoints(hosts, job.id) == []  # the final folder replaces them
    lora = CatalogModel.objects.get(trained_by_job=job)
    assert lora.location == key

    phase("resumed and finished")
    # 4. Evaluate the fine-tuned model (its adapter and the tiny base, both via the cache).
    resolved = [
        evaluating.resolve_candidate(
            project=project,
            key=k,
            template=template,
            generation=GenerationSettings(max_new_tokens=4),
        )
        for k in (f"model:{lora.id}",)
    ]
    evaluation = evaluation_create(
        project=project,
        user=owner,
        dataset=dataset,
        params=EvaluateParams(
            dataset_id=dataset.id,
            split="test",
            n_rows=2,
            sample_seed=3,
            candidates=[spec for spec, _, _ in resolved],
        ),
        sources=[(model, source) for _, model, source in resolved],
        rows=2,
    )
    evaluation = wait_for_job(evaluation.id, timeout=180)
    assert evaluation.status == JobStatus.SUCCEEDED, evaluation.error
    statuses = set(
        EvaluationCandidate.objects.filter(job=evaluation).values_list("status", flat=True)
    )
    assert statuses == {CandidateStatus.DONE}

    phase("evaluated")
    # 5. Export (merge the adapter), deploy, and answer the API from the serving worker.
    export = export_create(
        project=project,
        user=owner,
        source=lora,
        dataset=dataset,
        params=ExportParams(
            kind="safetensors",
            model_ref=lora.slug,
            dataset_id=dataset.id,
            eval_rows=2,
            max_new_tokens=4,
        ),
    )
    export = wait_for_job(export.id, timeout=180)
    assert export.status == JobStatus.SUCCEEDED, export.error
    variant = ModelVariant.objects.get(job=export)
    assert not os.path.isabs(variant.path) and not os.path.isabs(variant.bundle_path)
    variant_deploy(project=project, variant=variant, actor=owner)
    _, raw = api_token_create(project=project, actor=owner, name="three-hosts")
    answer = requests.post(
        hosts.web_url + reverse("api_generate", args=[project.slug]),
        json={
            "messages": [{"role": "user", "content": "Summarize: A: Lunch? B: Sure."}],
            "max_tokens": 4,
        },
        headers={"Authorization": f"Bearer {raw}"},
        timeout=120,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["usage"]["completion_tokens"] == 4
    # The OpenAI-compatible endpoint streams through the same serving worker, which
    # fetches the variant (a store key) itself.
    chat = _v1_chat(hosts.web_url, raw, _served_id(hosts.web_url, raw))
    assert chat.status_code == 200, chat.text
    assert chat.json()["usage"]["completion_tokens"] == 4

    # A deployed application version on the LoRA candidate (a store key, an adapter whose
    # base is this host's tiny model): the web sends a reference and the serving worker
    # resolves it on its own host; the web's disk never holds the weights.
    from lifecycle_app.stages.integrate.app.candidates import model_options
    from lifecycle_app.stages.integrate.app.services import application_create, version_deploy

    option = next(o for o in model_options(project=project) if o.model == lora)
    app_version = application_create(
        project=project,
        user=owner,
        name="Helper",
        option=option,
        fields={
            "template": "Answer briefly.\n\n{context}\n\nQuestion: {input}\nAnswer:",
            "retrieval": "off",
            "top_k": 3,
            "threshold": None,
            "cite": False,
            "reasoning": "none",
            "fallback_min_score": None,
            "max_new_tokens": 4,
        },
    )
    version_deploy(version=app_version, user=owner)
    chat = _v1_chat(hosts.web_url, raw, _served_id(hosts.web_url, raw))
    assert chat.status_code == 200, chat.text
    assert chat.json()["usage"]["completion_tokens"] > 0

    phase("served")
    # The bundle streams from the store through the web.
    django_client = Client()
    django_client.force_login(owner)
    http = requests.Session()
    http.cookies.set("sessionid", django_client.cookies["sessionid"].value)
    bundle = http.get(
        hosts.web_url + reverse("variant_download", args=[project.slug, variant.id]), timeout=60
    )
    assert bundle.status_code == 200 and bundle.content[:2] == b"PK"

    # Nobody touched another host's var folder; each host read through its own cache.
    for name in HOSTS:
        audit = hosts.root / f"audit-{name}.log"
        assert not audit.exists(), audit.read_text()
    assert list((hosts.var("serve") / "cache" / "entries").iterdir())
    assert not (hosts.var("web") / "jobs").exists()
    assert serving.alive() and second.alive()
