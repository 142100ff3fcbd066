# Herald's verbs. Needs only python3: every target installs what it uses into .venv / .venv-sam.
PYTHON ?= python3
VENV := .venv
SAM_VENV := .venv-sam
LAMBDA_VENV := .venv-lambda
BIN := $(VENV)/bin
# The functions' runtime (template.yaml: python3.12), for `make build` and the cold-start benchmark; empty
# when this machine has none (the benchmark then measures on the project's interpreter and says so).
PYTHON_LAMBDA ?= $(shell for p in python3.12 $$(pyenv root 2>/dev/null)/versions/3.12*/bin/python3; do \
	$$p -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null && echo $$p && break; done)
export PYTHONPATH := functions:.

.PHONY: setup run test test-unit test-localstack lint validate build bench bench-smoke chaos clean

# The pinned requirements, then the project itself, editable (pyproject.toml): `.venv/bin/herald` and
# `.venv/bin/python -m herald_local` work from any directory, without PYTHONPATH.
$(VENV)/.installed: requirements-dev.txt functions/requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/pip install --quiet --quiet --disable-pip-version-check --editable .
	touch $@

# The SAM CLI pins its own boto3 and pydantic: it lives in a venv of its own.
$(SAM_VENV)/.installed:
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --disable-pip-version-check aws-sam-cli==1.170.0
	touch $@

setup: $(VENV)/.installed

## run: set up, then start Herald locally (API on 127.0.0.1:3000) until Ctrl-C. ARGS="--port 8080" to change.
run: setup
	$(BIN)/python -m herald_local $(ARGS)

## test: set up, validate the template, lint, and run every test (the moto leg); says where the LocalStack leg stands.
test: setup validate lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	@$(BIN)/python -m herald_local.localstack --check

## test-localstack: the end-to-end tests again, on LocalStack (host mode, own .venv-localstack with Python 3.13).
## LOCALSTACK_ARGS="--endpoint http://127.0.0.1:4566" uses a running LocalStack (Docker) instead.
test-localstack: setup
	$(BIN)/python -m herald_local.localstack $(LOCALSTACK_ARGS) -- $(PYTEST_ARGS)

test-unit: setup
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

validate: setup $(SAM_VENV)/.installed
	$(SAM_VENV)/bin/sam validate --lint --template template.yaml
	$(BIN)/cfn-lint template.yaml

## build: `sam build` for AWS, with the Python 3.12 found above (sam build looks for python3.12 on the PATH,
## so its directory goes first). BUILD_ARGS="--build-dir DIR" to build elsewhere than .aws-sam/.
build: $(SAM_VENV)/.installed
	@test -n "$(PYTHON_LAMBDA)" || { echo "make build: no Python 3.12 here (python3.12 on the PATH or pyenv's" \
		"versions/3.12*): sam build needs the functions' runtime. Install one, or PYTHON_LAMBDA=/path/python3.12." >&2; exit 1; }
	PATH="$$(dirname "$$($(PYTHON_LAMBDA) -c 'import sys; print(sys.executable)')"):$$PATH" \
		$(SAM_VENV)/bin/sam build --template template.yaml $(BUILD_ARGS)

# What a function's container holds: its runtime, the zip's requirements and the runtime's boto3.
$(LAMBDA_VENV)/.installed: functions/requirements.txt
	$(PYTHON_LAMBDA) -m venv $(LAMBDA_VENV)
	$(LAMBDA_VENV)/bin/pip install --quiet --disable-pip-version-check -r functions/requirements.txt \
		$$(grep '^boto3==' requirements-dev.txt)
	touch $@

## bench: run the seven benchmarks at full scale (about 25 min), write bench/results.jsonl and refresh
## the figures in docs/performance.md.
bench: setup $(if $(PYTHON_LAMBDA),$(LAMBDA_VENV)/.installed)
	$(BIN)/python -m bench --scale full --out bench/results.jsonl --docs docs/performance.md

## bench-smoke: each benchmark at tiny scale (part of `make test`): they run, their JSON is well formed.
bench-smoke: setup
	$(BIN)/python -m pytest tests/e2e/test_bench_smoke.py $(PYTEST_ARGS)

## chaos: the chaos run (faults on, then a ledger of every delivery). ARGS="--deliveries 5000" to change.
chaos: setup
	$(BIN)/python -m bench.chaos $(ARGS)

clean:
	rm -rf $(VENV) $(SAM_VENV) $(LAMBDA_VENV) .venv-localstack .aws-sam .pytest_cache .mypy_cache .ruff_cache
