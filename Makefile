# ClubOS. `make run` and `make test` work from a fresh clone: they install what they need.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= $(shell command -v python3.12 2>/dev/null || echo python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum requirements.lock | cut -c1-12)
HOST ?= 127.0.0.1
PORT ?= 8000

help:  ## List the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else "ClubOS needs Python 3.12+ (found %s)" % sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)  ## Create .venv and install the locked dependencies

run: install  ## Migrate, create demo data and a demo login, serve on http://127.0.0.1:8000
	DJANGO_DEBUG=$${DJANGO_DEBUG:-1} $(BIN)/python manage.py migrate --noinput
	DJANGO_DEBUG=$${DJANGO_DEBUG:-1} $(BIN)/python manage.py seed_demo --url http://$(HOST):$(PORT)/
	# The ASGI application production serves, with reload on code changes. --no-proxy-headers:
	# uvicorn would otherwise take the client address from X-Forwarded-For of any loopback
	# peer; the app decides that itself (TRUSTED_PROXY_COUNT). Beside it, in a session of its
	# own, the task worker (Slack alerts, the sweeps; reloads too), stopped when the server stops.
	export DJANGO_DEBUG=$${DJANGO_DEBUG:-1}; \
	setsid $(BIN)/python manage.py tasks_worker --verbosity 0 & worker=$$!; \
	trap 'kill -TERM -- -$$worker 2>/dev/null; wait $$worker' EXIT; \
	$(BIN)/uvicorn clubos.asgi:application --reload \
		--reload-dir accounts --reload-dir assistants --reload-dir clubos --reload-dir config \
		--reload-dir requestlogs --reload-dir routing --reload-dir templates \
		--host $(HOST) --port $(PORT) --loop uvloop --http httptools --lifespan on \
		--no-proxy-headers

test: install  ## Lint, type-check and run the whole test suite
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DJANGO_SECRET_KEY=$${DJANGO_SECRET_KEY:-type-checking-only} $(BIN)/mypy .
	$(BIN)/pytest $(PYTEST_ARGS)

serve: install  ## Serve under gunicorn (set DJANGO_SECRET_KEY, DATABASE_URL, REDIS_URL first)
	# Production defaults: HTTPS behind a TLS proxy. Over plain HTTP (on loopback) add
	# DJANGO_SECURE_SSL_REDIRECT=0 DJANGO_SECURE_COOKIES=0 (README, "Production").
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput -v0
	# The task worker beside gunicorn; whichever stops (Ctrl+C, a crash), the other is stopped.
	setsid $(BIN)/python manage.py tasks_worker & worker=$$!; \
	trap 'kill -TERM -- -$$worker 2>/dev/null; wait $$worker' EXIT; \
	$(BIN)/gunicorn -c gunicorn.conf.py

bench: install  ## Benchmark the old design against the new on PostgreSQL + Redis (bench/README.md)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

faults: install  ## Each fault under c=50 streamed load on gunicorn + PostgreSQL + Redis, a table (README "Faults")
	$(BIN)/python bench/faults.py $(FAULTS_ARGS)

lock:  ## Re-resolve requirements.lock from pyproject.toml
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.12 -o requirements.lock

.PHONY: help install run test serve bench faults lock
