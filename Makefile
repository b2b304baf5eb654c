# Quick start: `make demo` runs the daily health check on the embedded stack; `make test` runs every check.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The shared layer's package and the repository root, as Lambda's layer and the tests see them.
export PYTHONPATH := shared:.
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck unit demo bench-checks clean openapi e2e-deps

$(STAMP): requirements.txt shared/requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

test: lint typecheck e2e-deps
	$(PY) -m pytest -q

unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

demo: $(STAMP)
	$(PY) -m local.demo

# The browser test's Chromium, from Debian (a Playwright browser download does not work here).
e2e-deps:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium chromium-driver) || echo "chromium could not be installed"

# Regenerate the committed OpenAPI document from the API's routes (a test fails when they drift).
openapi: $(STAMP)
	$(PY) scripts/generate_openapi.py

bench-checks: $(STAMP)
	$(PY) -m bench.check_pipeline

clean:
	rm -rf $(VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache
