# `make train` and `make test` set up .venv on first use, then run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ARGS ?=
PYTEST_ARGS ?=

.PHONY: install install-dev train test lint format clean

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

test: $(VENV)/.installed-dev
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check tunixrt hydra_plugins tests scripts
	$(BIN)/ruff format --check tunixrt hydra_plugins tests scripts
	$(BIN)/mypy tunixrt hydra_plugins

format: $(VENV)/.installed-dev
	$(BIN)/ruff check --fix tunixrt hydra_plugins tests scripts
	$(BIN)/ruff format tunixrt hydra_plugins tests scripts

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache .mypy_cache .ruff_cache
