# Quick start: `make demo` runs the daily health check on the embedded stack; `make test` runs every check;
# `make local` keeps the stack running to try by hand.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The shared layer's package and the repository root, as Lambda's layer and the tests see them.
export PYTHONPATH := shared:.
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck unit demo local bench-checks clean openapi e2e-deps webhook-node-deps tile-node-deps catalogues
.PHONY: tile-screenshots
.PHONY: bench bench-pipeline bench-cost bench-worker bench-escalator bench-coldstart bench-budget
.PHONY: deploy-checks cfn-lint sam-validate checkov sam-build-check

# Deployability checks (no AWS credentials, no Docker): the SAM CLI (with its cfn-lint) and checkov each in a
# venv of their own, since both pin boto3 and pydantic against the app's; installed once, behind stamps.
SAM_VENV := .venv-sam
SAM_STAMP := $(SAM_VENV)/.installed
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
# No telemetry, and no probing for credentials (the instance metadata service) on a machine that has none.
NO_AWS := SAM_CLI_TELEMETRY=0 AWS_EC2_METADATA_DISABLED=true

$(STAMP): requirements.txt shared/requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

$(SAM_STAMP): tools/requirements-sam.txt
	test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/python -m pip install --quiet -r tools/requirements-sam.txt
	touch $(SAM_STAMP)

$(CHECKOV_STAMP): tools/requirements-checkov.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet -r tools/requirements-checkov.txt
	touch $(CHECKOV_STAMP)

cfn-lint: $(SAM_STAMP)
	$(NO_AWS) $(SAM_VENV)/bin/cfn-lint template.yaml

sam-validate: $(SAM_STAMP)
	$(NO_AWS) $(SAM_VENV)/bin/sam validate --lint --template-file template.yaml --region us-east-1

# Every suppression is in template.yaml (Metadata: checkov: skip) with its reason; tests/deploy checks that.
checkov: $(CHECKOV_STAMP)
	$(NO_AWS) $(CHECKOV_VENV)/bin/checkov -f template.yaml --framework cloudformation --quiet --compact --skip-download

# sam build (arm64) into a temporary folder, then every handler imported from the build output in a clean
# interpreter (tools/deploy_check.py says how; SAM's cache is kept in .aws-sam/check-cache).
sam-build-check: $(STAMP) $(SAM_STAMP)
	$(NO_AWS) $(PY) tools/deploy_check.py --sam $(SAM_VENV)/bin/sam

deploy-checks: cfn-lint sam-validate checkov sam-build-check

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

test: lint typecheck deploy-checks e2e-deps webhook-node-deps tile-node-deps
	$(PY) -m pytest -q

unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

demo: $(STAMP)
	$(PY) -m local.demo

# The embedded stack and its API until Ctrl-C, to try by hand (README, "Try it by hand"). LOCAL_PORT is the API's
# (the control server takes LOCAL_PORT+1, the tile demo page LOCAL_PORT+2); `make local ARGS=--simulated` keeps a simulated clock. With
# INTUIT_ENVIRONMENT=sandbox and your app's INTUIT_CLIENT_ID/INTUIT_CLIENT_SECRET it runs against Intuit's
# sandbox (register http://localhost:$(LOCAL_PORT)/oauth/callback in your Intuit app).
LOCAL_PORT ?= 8700
local: $(STAMP)
	$(PY) -m local.serve --port $(LOCAL_PORT) $(ARGS)

# The browser test's Chromium, from Debian (a Playwright browser download does not work here).
e2e-deps:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium chromium-driver) || echo "chromium could not be installed"

# The official Node Standard Webhooks library, to run docs/webhooks.md's Node snippet (pinned in the lock file).
webhook-node-deps:
	command -v npm >/dev/null && cd tests/webhooks_node && npm ci --no-audit --no-fund --silent || echo "npm ci failed (or npm is missing): the Node snippet test will fail"

# axe-core for the QBO tile's browser test (pinned in the lock file; the test injects its axe.min.js).
tile-node-deps:
	command -v npm >/dev/null && cd tests/tile_node && npm ci --no-audit --no-fund --silent || echo "npm ci failed (or npm is missing): the tile's accessibility test will fail"

# The QBO tile's screenshots in docs/ (docs/tile.md shows them): the browser test saves them there when asked.
tile-screenshots: $(STAMP) e2e-deps tile-node-deps
	TILE_SCREENSHOTS=docs $(PY) -m pytest -q tests/e2e/test_tile_browser.py -k "design or phone"

# The notices' message catalogues: extract the messages (babel.cfg), merge them into each locale's .po (edit the
# translations there), compile the .mo files the layer ships. Both are committed; a test fails when they drift.
LOCALES_DIR := shared/qbo_health/locales
catalogues: $(STAMP)
	$(VENV)/bin/pybabel extract -F babel.cfg -k N_ --no-location --omit-header --sort-output -o $(LOCALES_DIR)/messages.pot .
	$(VENV)/bin/pybabel update -i $(LOCALES_DIR)/messages.pot -d $(LOCALES_DIR) -D messages --width 100 --ignore-obsolete --ignore-pot-creation-date
	$(VENV)/bin/pybabel compile -d $(LOCALES_DIR) -D messages --statistics

# Regenerate the committed OpenAPI document from the API's routes (a test fails when they drift).
openapi: $(STAMP)
	$(PY) scripts/generate_openapi.py

bench-checks: $(STAMP)
	$(PY) -m bench.check_pipeline

# Benchmarks (bench/README.md): each prints its figures and writes bench/results/<name>.json.
bench-pipeline: $(STAMP)
	$(PY) -m bench.pipeline

bench-cost: $(STAMP)
	$(PY) -m bench.cost_measure
	$(PY) -m bench.cost_measure --evidence
	$(PY) -m bench.cost

bench-worker: $(STAMP)
	$(PY) -m bench.worker

bench-escalator: $(STAMP)
	$(PY) -m bench.escalator

bench-coldstart: $(STAMP)
	$(PY) -m bench.coldstart

bench-budget: $(STAMP)
	$(PY) -m bench.probe_budget
	$(PY) -m bench.probe_budget_stack

bench: bench-pipeline bench-cost bench-worker bench-escalator bench-coldstart bench-budget

clean:
	rm -rf $(VENV) $(SAM_VENV) $(CHECKOV_VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache
