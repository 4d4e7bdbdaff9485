# shammie: `make reports` and `make test` are all a newcomer needs; both set up .venv themselves.
# `make help` lists every target. VENV=path puts the virtualenv elsewhere.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_BOOT ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.shammie-installed
PROFILE ?= quick
ONLY ?=
ARGS ?=
PYTEST_ARGS ?=

.PHONY: help setup reports test unit smoke full lab bench lint format strip clean clean-data

help: ## list the targets
	@echo "shammie - a research workbook. Usage: make <target> [VENV=path] [ONLY=pattern] [ARGS='-p name=value']"
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-11s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON_BOOT) >/dev/null || { echo "error: $(PYTHON_BOOT) not found; install Python 3.11 or pass PYTHON_BOOT=/path/to/python3.11"; exit 1; }
	@$(PYTHON_BOOT) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "error: Python >= 3.11 needed; pass PYTHON_BOOT=/path/to/python3.11"; exit 1; }
	@test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (shammie)" >/dev/null
	@# check the stack imports together (torchvision fails beside a mismatched torch) and warm the bytecode cache
	$(PY) -c "import torch, torchvision, matplotlib.pyplot, papermill, shammie; print('torch', torch.__version__, '| torchvision', torchvision.__version__)"
	@touch $(STAMP)
	@echo "shammie: environment ready in $(VENV)"

setup: $(STAMP) ## create/update the virtualenv with the pinned stack (idempotent)

reports: $(STAMP) ## run every notebook at the quick profile and write reports/latest/index.html
	$(PY) -m shammie run --profile $(PROFILE) $(if $(ONLY),--only $(ONLY)) $(ARGS)

test: $(STAMP) ## unit tests + a smoke run of every notebook
	$(PY) -m pytest $(PYTEST_ARGS)

unit: $(STAMP) ## unit tests only (no notebooks, no servers)
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

smoke: $(STAMP) ## run every notebook at the smoke profile (seconds each)
	$(PY) -m shammie run --profile smoke $(if $(ONLY),--only $(ONLY)) $(ARGS)

full: $(STAMP) ## paper-scale run (GPU; CIFAR-10 under data/ or network)
	$(PY) -m shammie run --profile full $(if $(ONLY),--only $(ONLY)) $(ARGS)

lab: $(STAMP) ## open JupyterLab on notebooks/ with the project's kernel
	SHAMMIE_HOME=$(CURDIR) $(VENV)/bin/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root) $(ARGS)

bench: $(STAMP) ## benchmarks: every bench/bench_*.py, ratios against peers measured in one run
	@set -e; for f in bench/bench_*.py; do echo "== $$f"; $(PY) $$f; done

lint: $(STAMP) ## ruff on the library, tests, benchmarks and notebooks; notebooks stored clean
	$(VENV)/bin/ruff check lib tests bench notebooks
	$(PY) -m shammie strip --check
	$(PY) -m pytest -q tests/test_notebook_hygiene.py

format: $(STAMP) ## ruff format and fix imports
	$(VENV)/bin/ruff check --fix lib tests bench
	$(VENV)/bin/ruff format lib tests bench

strip: $(STAMP) ## remove outputs and metadata from the notebooks before committing
	$(PY) -m shammie strip

clean: ## remove reports and caches (keeps data/cache and the virtualenv)
	rm -rf reports .pytest_cache .ruff_cache build dist lib/*.egg-info
	find . -name __pycache__ -not -path "./$(VENV)/*" -prune -exec rm -rf {} +

clean-data: ## remove generated data and checkpoints under data/cache
	rm -rf data/cache
