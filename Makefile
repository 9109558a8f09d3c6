# `make train` and `make test` set up the virtualenv on first use, then run.
# `make check` runs every gate CI runs (see .ci/run).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=
PYTEST_ARGS ?=
# pytest-xdist workers (auto: one per core, at most 4); 0 runs the suite in one process.
# Whole modules go to a worker (--dist loadscope), so module fixtures are built once.
PYTEST_WORKERS ?= auto
XDIST := -n $(PYTEST_WORKERS) --maxprocesses 4 --dist loadscope
# The second Python the suite runs on (the GPU images run 3.12); .ci/run finds it.
PYTHON_312 ?= python3.12

.PHONY: install install-dev train test lint security secrets coverage test-312 check format clean gpu-check

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e '.[dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

train: $(VENV)/.installed  ## the default run: llama_tiny on the bundled traces, CPU
	$(BIN)/tunixrt-train $(ARGS)

test: $(VENV)/.installed-dev  ## the whole suite (PYTEST_ARGS narrows it)
	$(BIN)/pytest $(XDIST) $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev  ## ruff (lint and format) and mypy (every function typed)
	$(BIN)/ruff check tunixrt hydra_plugins tests scripts .ci
	$(BIN)/ruff format --check tunixrt hydra_plugins tests scripts .ci
	$(BIN)/mypy tunixrt hydra_plugins

security: $(VENV)/.installed-dev  ## bandit on the library: medium severity and up fails
	$(BIN)/bandit -r tunixrt hydra_plugins --severity-level medium --quiet

secrets: $(VENV)/.installed-dev  ## a secret in a tracked file that .secrets.baseline lacks fails
	$(BIN)/python .ci/check_secrets.py .secrets.baseline

coverage: $(VENV)/.installed-dev  ## the suite under coverage (subprocesses too); fails under the floor
	rm -f .coverage .coverage.*
	$(BIN)/coverage run -m pytest $(XDIST) --durations=25 $(PYTEST_ARGS)
	$(BIN)/coverage combine --quiet
	$(BIN)/coverage report

test-312:  ## the README's test command on Python 3.12, in .venv-3.12
	$(MAKE) test PYTHON=$(PYTHON_312) VENV=.venv-3.12

check: lint security secrets coverage test-312  ## every CI gate

gpu-check:  ## on an NVIDIA GPU with JAX for CUDA: GPU tests and 0.5B benchmarks -> $$OUT/gpu_report.json
	scripts/gpu_check.sh

format: $(VENV)/.installed-dev
	$(BIN)/ruff check --fix tunixrt hydra_plugins tests scripts .ci
	$(BIN)/ruff format tunixrt hydra_plugins tests scripts .ci

clean:
	rm -rf .venv .venv-3.12 outputs multirun .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.*
