# docqa: `make run` sets everything up and serves; `make test` proves it works.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
# The sample corpus: docqa's own documentation as text (the screenshots in docs/ hold no text
# layer, and docqa does no OCR: they would only fail).
SAMPLE ?= README.md $(sort $(wildcard docs/*.md))
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 ANONYMIZED_TELEMETRY=False \
       SCARF_NO_ANALYTICS=true DO_NOT_TRACK=true UNSTRUCTURED_DISABLE_NOTICE=1

.PHONY: install run ingest-sample serve test test-fast lint bench airflow clean help

help:
	@echo "make install   create $(VENV) and install docqa with its dependencies"
	@echo "make run       install, ingest the sample corpus ($(SAMPLE)), serve on $(HOST):$(PORT)"
	@echo "make test      start Redis/PostgreSQL if absent and run the whole test suite"
	@echo "make lint      ruff, mypy and the import contracts (lint-imports)"
	@echo "make bench     naive-vs-docqa ingestion, serving at 10k/100k chunks, cache, retrieval (BENCH='--quick --only ingest,serving')"
	@echo "make airflow   Airflow standalone with docqa's DAGs (AIRFLOW_HOME=airflow-home/, port 8080)"

install: $(STAMP)

# torch first, as its CPU build: PyPI's torch wheel for Linux is the CUDA build and pulls
# several GB of nvidia-* wheels. "2.13.0+cpu" exists only on PyTorch's CPU index (added as
# an extra index), so pip cannot pick PyPI's CUDA wheel for it; a machine without network
# but with the wheel in a local wheelhouse (pip's find-links) installs it from there.
# unstructured-inference goes in without its dependencies: unstructured imports one of its
# modules, but its own needs (timm, CUDA torch) are only for layout models docqa does not use.
TORCH_CPU := torch==2.13.0+cpu
TORCH_INDEX := https://download.pytorch.org/whl/cpu

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
	  echo "docqa needs Python 3.11 or newer; $(PYTHON) is $$($(PYTHON) -V 2>&1)."; \
	  echo "Install one (e.g. apt install python3.11-venv) and run: make install PYTHON=python3.11"; \
	  exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --retries 1 --extra-index-url $(TORCH_INDEX) '$(TORCH_CPU)'
	$(BIN)/pip install --quiet -c constraints.txt -e '.[airflow,s3,dev]'
	$(BIN)/pip install --quiet --no-deps -c constraints.txt unstructured-inference
	$(BIN)/docqa prepare
	touch $(STAMP)

ingest-sample: install
	$(BIN)/docqa ingest $(SAMPLE)

serve: install
	@echo "docqa is starting on http://$(HOST):$(PORT). Try:"
	@echo "  curl -s http://$(HOST):$(PORT)/v1/ask -H 'content-type: application/json' -d '{\"question\": \"How do I run the tests?\"}'"
	$(BIN)/docqa serve --host $(HOST) --port $(PORT)

run: ingest-sample serve

test: install
	scripts/ensure-services.sh
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not slow"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# Not part of `make test`: minutes to an hour; figures go to benchmarks/results/ and, with
# BENCH=--record, to benchmarks/RESULTS.md.
BENCH ?=
bench: install
	$(BIN)/python -m benchmarks.run $(BENCH)

# Api-server, scheduler, dag-processor and triggerer in one terminal (docs/airflow.md).
airflow: install
	scripts/airflow-local.sh

clean:
	rm -rf data .pytest_cache .mypy_cache .ruff_cache
