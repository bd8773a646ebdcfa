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
# DVC's site cache (hash and index databases) inside the project; see docs/dvc.md.
export DVC_SITE_CACHE_DIR := $(CURDIR)/.dvc/tmp/site

.PHONY: setup run report tables-pdf test test-fast lint paper-dryrun clean dvc-repro dvc-track dvc-touch dvc-pull dvc-yaml

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[test]'
	touch $(STAMP)

## run: the whole pipeline on the embedded profile (params.yaml) -> results/embedded/tables/, figures/, tsne/
# --rerun-incomplete: a job cut off by a kill or Ctrl-C re-runs, and training resumes from its
# checkpoint (docs/reliability.md).
run: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) --rerun-incomplete all

## report: the self-contained HTML report (tables, figures, parameters) -> $(REPORT); runs what is missing first
REPORT ?= results/embedded/report.html
report: run
	$(BIN)/snakemake --report $(REPORT)
	@echo "open $(REPORT) in a browser"

## tables-pdf: the embedded tables compiled (pdflatex; Debian texlive-latex-recommended) -> results/embedded/tables/tables.pdf,
## and its first two pages as docs/img/tables-1.png, tables-2.png (pdftoppm; Debian poppler-utils)
tables-pdf: run
	pdflatex -interaction=nonstopmode -halt-on-error -output-directory results/embedded/tables docs/img/tables.tex
	pdftoppm -png -r 90 -f 1 -l 2 results/embedded/tables/tables.pdf docs/img/tables

## test: every test, the end-to-end workflow runs included, over one pytest-xdist worker per
## core (TEST_WORKERS); a test file stays on one worker, so a module's fixtures are built once
TEST_WORKERS ?= auto
test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

## test-fast: skip the slow end-to-end workflow runs
test-fast: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not slow"

## lint: ruff (lint and format), mypy on src/, snakefmt and Snakemake's own lint on the rules; CI runs it
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/snakemake --lint

## paper-dryrun: what the paper's configuration would run
paper-dryrun: $(STAMP)
	$(BIN)/snakemake -n reproduce_tables --configfile workflow/configs/paper.yaml

clean:
	rm -rf results/embedded .snakemake

# DVC (docs/dvc.md). dvc.yaml runs the same steps on params.yaml; these keep DVC and Snakemake
# agreeing about finished results without re-running anything.

## dvc-yaml: write dvc.yaml from the steps' contract (src/cdrepro/steps.py); a test fails when it is stale
dvc-yaml: $(STAMP)
	$(BIN)/python -m cdrepro.dvc_stages

## dvc-repro: the pipeline with DVC (dvc repro), then mark its results current for Snakemake
dvc-repro: $(STAMP)
	$(BIN)/dvc repro
	$(BIN)/python -m cdrepro.dvc_bridge touch

## dvc-track: after a Snakemake run, record its results in dvc.lock + the DVC cache (dvc commit)
dvc-track: $(STAMP)
	$(BIN)/python -m cdrepro.dvc_bridge track

## dvc-touch: after dvc pull/checkout/exp apply, mark DVC's results current for Snakemake
dvc-touch: $(STAMP)
	$(BIN)/python -m cdrepro.dvc_bridge touch

## dvc-pull: fetch dvc.lock's results from the DVC remote, then mark them current for Snakemake
dvc-pull: $(STAMP)
	$(BIN)/dvc pull
	$(BIN)/python -m cdrepro.dvc_bridge touch

# MLflow (docs/mlflow.md)
.PHONY: mlflow-ui
PORT ?= 5000

## mlflow-ui: the MLflow UI on results/<profile>/mlflow.db, on http://127.0.0.1:$(PORT) only
mlflow-ui: $(STAMP)
	$(BIN)/cdrepro ui --port $(PORT)

# Benchmark (bench/README.md): training pairs/s of the authors' input path vs ours vs the model
# alone, and K-means time, at the paper's size. Needs a CUDA GPU.
.PHONY: bench
BENCH_OUT ?= results/bench

## bench: bench/train_throughput.py at ResNet-34, 224 px, batch 128 and 256 (needs a GPU)
bench: $(STAMP)
	$(BIN)/python bench/train_throughput.py --device cuda --backbone resnet34 --width 64 --image-size 224 --batch-size 128 --workers 4 --json $(BENCH_OUT)/resnet34-224-b128.json
	$(BIN)/python bench/train_throughput.py --device cuda --backbone resnet34 --width 64 --image-size 224 --batch-size 256 --workers 4 --json $(BENCH_OUT)/resnet34-224-b256.json
