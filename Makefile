# Two set-up commands work on a fresh machine: `make demo` and `make test`.
# Each creates its own virtualenv and installs what it needs; nothing is assumed installed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEV_STAMP := $(VENV)/.dev-installed
DEMO_STAMP := $(VENV)/.demo-installed

.PHONY: test lint typecheck unit services compat-ends compat demo ui bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# exporters/ installs as sqreen_otel.exporters through a package-dir mapping. Our build backend
# (build_backend/) makes a plain `pip install -e .` a "strict" editable install: a link tree that
# mypy can follow. It must be redone when a module is added or removed, hence the dependency on the
# package directories. Nothing runs with the repository root on sys.path (python -P for pytest in
# importlib mode; scripts run from their own folders), so the mapped package is always the one used.
SOURCES := sqreen_otel exporters

$(DEV_STAMP): pyproject.toml build_backend/sqreen_otel_build.py $(SOURCES) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

$(DEMO_STAMP): pyproject.toml $(SOURCES) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[flask]'
	touch $@

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(DEV_STAMP)
	$(BIN)/mypy

# What the tests start themselves, installed from Debian when missing: a real Redis server, and
# a headless chromium with its chromedriver (the web Event Explorer's browser tests).
DEBIAN_PACKAGES := redis-server chromium chromium-driver
services:
	@missing=""; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	[ -x /usr/bin/chromedriver ] || missing="$$missing chromium-driver"; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing (Debian) for the tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# The dev venv has every framework instrumentation: none of their tests may skip here.
unit: $(DEV_STAMP) services
	SQREEN_OTEL_TEST_INSTRUMENTATIONS=flask,django $(BIN)/python -P -m pytest

# Our wheel in apps' own venvs, on the oldest and the newest OpenTelemetry release we support,
# and the sdist's test suite in each (tests/compat/compat.py; venvs cached in .venv-compat/).
compat-ends: $(DEV_STAMP) services
	$(BIN)/python tests/compat/compat.py oldest newest

# The whole matrix: the two ends, releases in between, and a fresh `pip install sqreen-otel[...]`.
compat: $(DEV_STAMP) services
	$(BIN)/python tests/compat/compat.py all

test: lint typecheck unit compat-ends

# The demo keeps its events in .demo/ (replaced at each run); `make ui` explores them.
DEMO_STORE ?= $(CURDIR)/.demo/events.db
demo: $(DEMO_STAMP)
	SQREEN_DEMO_STORE=$(DEMO_STORE) $(BIN)/python examples/demo.py

ui: $(DEMO_STAMP)
	$(BIN)/sqreen-otel ui --store $(DEMO_STORE)

bench: $(DEV_STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .venv-compat .demo .mypy_cache .pytest_cache .ruff_cache *.egg-info
