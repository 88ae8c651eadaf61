"""The Celery app. Queues: "cpu" (default), "gpu" (workers on CUDA hosts) and "serve"
(the dedicated serving worker that answers API requests with deployed models kept
loaded; see workers/serve_reply.py).

Embedded default: kombu's filesystem transport under var/broker, so nothing else must
run. With REDIS_URL set, Redis is the broker. Results are not stored: Job rows are the
source of truth, so no result backend is configured.
"""

from __future__ import annotations

import os

import django
from celery import Celery
from kombu import Exchange, Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "lifecycle_app.settings")
# No model hub is reachable: never try, and keep progress bars out of worker logs.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
django.setup()

from django.conf import settings  # noqa: E402

# Above the longest hard time limit, so Redis never redelivers a job that is still
# running (celery issues 5935, 3430).
VISIBILITY_TIMEOUT_S = 4 * 3600

# Every broker call from the web is bounded: connecting, and each read and write on the
# socket, so a hung (not down) Redis fails a submission within seconds, like a down one.
BROKER_SOCKET_TIMEOUT_S = 2.0

if settings.REDIS_URL:
    broker_url = settings.REDIS_URL
    transport_options: dict[str, object] = {
        "visibility_timeout": VISIBILITY_TIMEOUT_S,
        "socket_timeout": BROKER_SOCKET_TIMEOUT_S,
        "socket_connect_timeout": BROKER_SOCKET_TIMEOUT_S,
        "retry_on_timeout": False,
    }
else:
    broker_url = "filesystem://"
    folders = {name: settings.BROKER_DIR / name for name in ("queue", "processed", "control")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    transport_options = {
        "data_folder_in": str(folders["queue"]),
        "data_folder_out": str(folders["queue"]),
        "processed_folder": str(folders["processed"]),
        "control_folder": str(folders["control"]),
        "store_processed": False,
        # The serving worker answers API requests: poll the folder often (the default
        # 1 s would add up to a second to every request).
        "polling_interval": 0.05,
    }

# Every task module, imported by the worker at start-up (reap.py also connects the
# reap-on-start hook to worker_ready).
TASK_MODULES = [
    f"workers.tasks.{name}"
    for name in (
        "generate",
        "trial",
        "finetune",
        "align",
        "evaluate",
        "export",
        "index",
        "profile",
        "register_model",
        "serve",
        "app_evaluate",
        "reap",
    )
]

app = Celery("lifecycle", include=TASK_MODULES)
app.conf.update(
    broker_url=broker_url,
    broker_transport_options=transport_options,
    broker_connection_retry_on_startup=True,
    broker_connection_timeout=BROKER_SOCKET_TIMEOUT_S,  # a silent broker must not hang a page
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    task_ignore_result=True,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_default_queue="cpu",
    task_queues=[
        Queue("cpu", Exchange("cpu", type="direct"), routing_key="cpu"),
        Queue("gpu", Exchange("gpu", type="direct"), routing_key="gpu"),
        Queue("serve", Exchange("serve", type="direct"), routing_key="serve"),
    ],
    # One quick retry (a dropped connection); with the socket timeouts, a hung broker
    # fails a submission in about 2 x 2 s.
    task_publish_retry_policy={"max_retries": 1, "interval_start": 0.2, "interval_step": 0.5},
    worker_hijack_root_logger=False,
    timezone="UTC",
)
