# reasonloop — `make help` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MLFLOW_PORT ?= 5000

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export NO_MKDOCS_2_WARNING := 1

.PHONY: help install run test test-fast bench docs api ui prefect-ui serve lint clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# CPU torch first, so the project's `torch>=2.3` is already met (a bare `torch` pulls a CUDA build).
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## install the project into .venv (a no-op when up to date)

run: install ## reindex the sample corpus, run the nightly eval, print the summary
	$(BIN)/reasonloop run

PYTEST_WORKERS ?= auto

test: install ## check the layer contract, build the docs, run every test tier (one worker per core: ~12 min on 2 cores)
	$(BIN)/lint-imports
	$(BIN)/mkdocs build --strict --quiet
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile

test-fast: install ## the test suite without slow and server tests
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile -m "not slow and not server"

bench: install ## run the benchmarks (~2 h on 2 cores); writes bench-results.json and bench-results*.md
	$(BIN)/python -m tests.benchmarks.run
	$(BIN)/python -m tests.benchmarks.retrieval
	$(BIN)/python -m tests.benchmarks.retrieval --backend torch-bf16
	$(BIN)/python -m tests.benchmarks.retrieval --backend onnx
	$(BIN)/python -m tests.benchmarks.retrieval --backend onnx-int8
	$(BIN)/python -m tests.benchmarks.encoders
	$(BIN)/python -m tests.benchmarks.memory
	$(BIN)/python -m tests.benchmarks.reasoning
	$(BIN)/python -m tests.benchmarks.strategies
	$(BIN)/python -m tests.benchmarks.faithfulness
	$(BIN)/python -m tests.benchmarks.serving
	$(BIN)/python -m tests.benchmarks.injection
	$(BIN)/python -m tests.benchmarks.dask_eval

docs: install ## build the documentation site into site/ (strict: broken links and stale references fail)
	$(BIN)/mkdocs build --strict

api: install ## serve the question-answering endpoint on 127.0.0.1:8080 (traced into MLflow)
	$(BIN)/reasonloop api

ui: install ## MLflow UI on 127.0.0.1 against the local store
	$(BIN)/reasonloop ui --port $(MLFLOW_PORT)

prefect-ui: install ## Prefect server + UI on 127.0.0.1:4200, its database in the state folder
	$(BIN)/reasonloop prefect-ui

serve: install ## serve every flow as a Prefect deployment (crons, triggers, corpus watch)
	$(BIN)/reasonloop serve

lint: install ## ruff over the code, and the layer contract
	$(BIN)/ruff check reasonloop tasks flows tests docs/hooks
	$(BIN)/lint-imports

clean: ## remove the state folder (runs, index, caches) and the built docs; keeps .venv
	rm -rf .reasonloop site
