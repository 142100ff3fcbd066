# Herald's verbs. Needs only python3: every target installs what it uses into .venv / .venv-sam.
PYTHON ?= python3
VENV := .venv
SAM_VENV := .venv-sam
BIN := $(VENV)/bin
export PYTHONPATH := functions:.

.PHONY: setup run test test-unit test-localstack lint validate bench chaos clean

$(VENV)/.installed: requirements-dev.txt functions/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
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

## bench: print the budgets' figures (stack start, end-to-end latency, handler import cost).
bench: setup
	$(BIN)/python bench/budgets.py

## chaos: the chaos run (faults on, then a ledger of every delivery). ARGS="--deliveries 5000" to change.
chaos: setup
	$(BIN)/python -m bench.chaos $(ARGS)

clean:
	rm -rf $(VENV) $(SAM_VENV) .venv-localstack .aws-sam .pytest_cache .mypy_cache .ruff_cache
