# One-command entry points. Both `make run` and `make test` create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= all
# The workflow's jobs call `cdrepro`; make it the venv's.
export PATH := $(BIN):$(PATH)
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1

.PHONY: setup run test test-fast lint paper-dryrun clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[test]'
	touch $(STAMP)

## run: the whole pipeline on the embedded profile (params.yaml) -> results/embedded/tables/
run: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) reproduce_tables

## test: every test, the end-to-end workflow runs included
test: $(STAMP)
	$(BIN)/python -m pytest

## test-fast: skip the slow end-to-end workflow runs
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

lint: $(STAMP)
	$(BIN)/snakemake --lint

## paper-dryrun: what the paper's configuration would run
paper-dryrun: $(STAMP)
	$(BIN)/snakemake -n reproduce_tables --configfile workflow/configs/paper.yaml

clean:
	rm -rf results/embedded .snakemake
