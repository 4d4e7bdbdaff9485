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
CONFIRM ?=

# A VENV outside this checkout may be shared by several checkouts: an editable install would point
# it at whichever checkout installed first. There the package is installed as a copy (for its
# dependencies) and every target puts this checkout's lib/ first on PYTHONPATH, kernels included.
VENV_ABS := $(abspath $(VENV))
SHARED_VENV := $(if $(filter $(CURDIR)/%,$(VENV_ABS)),,yes)
INSTALL_MODE := $(if $(SHARED_VENV),,-e)
ifneq ($(SHARED_VENV),)
export PYTHONPATH := $(CURDIR)/lib$(if $(PYTHONPATH),:$(PYTHONPATH))
endif

.PHONY: help setup browser reports test unit smoke full lab bench lint format strip clean clean-reports clean-data

help: ## list the targets
	@echo "shammie - a research workbook. Usage: make <target> [PROFILE=quick] [VENV=path] [ONLY=pattern] [ARGS='-p name=value']"
	@if [ -t 1 ]; then on='\033[36m'; off='\033[0m'; else on=''; off=''; fi; \
	grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -v on="$$on" -v off="$$off" 'BEGIN {FS = ":.*?## "}; {printf "  %s%-13s%s %s\n", on, $$1, off, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON_BOOT) >/dev/null || { echo "error: $(PYTHON_BOOT) not found; install Python 3.11 or pass PYTHON_BOOT=/path/to/python3.11"; exit 1; }
	@$(PYTHON_BOOT) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "error: Python >= 3.11 needed; pass PYTHON_BOOT=/path/to/python3.11"; exit 1; }
	@test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt $(INSTALL_MODE) ".[dev,cluster]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (shammie)" >/dev/null
	@# check the stack imports together (torchvision fails beside a mismatched torch) and warm the bytecode cache
	$(PY) -c "import torch, torchvision, matplotlib.pyplot, papermill, shammie; print('torch', torch.__version__, '| torchvision', torchvision.__version__)"
	@touch $(STAMP)
	@echo "shammie: environment ready in $(VENV)"

setup: $(STAMP) ## create/update the virtualenv with the pinned stack (idempotent)

browser: ## install Debian's headless Chromium for tests/test_browser.py (root or sudo; skipped if present)
	@if command -v chromium >/dev/null || command -v chromium-browser >/dev/null || [ -n "$$SHAMMIE_CHROMIUM" ]; then \
	  echo "browser: $$(command -v chromium || command -v chromium-browser || echo $$SHAMMIE_CHROMIUM) is there"; \
	elif command -v apt-get >/dev/null; then \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null && echo "browser: installed chromium"; \
	else echo "browser: install Chromium yourself (or set SHAMMIE_CHROMIUM=/path/to/chrome); tests/test_browser.py skips without it"; fi

JOBS ?=
NB ?=

reports: $(STAMP) ## run every notebook at the quick profile, in parallel (JOBS=cores), into reports/latest/index.html
	$(PY) -m shammie run --profile $(PROFILE) $(if $(ONLY),--only $(ONLY)) $(if $(JOBS),--jobs $(JOBS)) $(ARGS)

.PHONY: sweep
sweep: $(STAMP) ## one notebook over a grid, claims over seeds: make sweep NB=02 ARGS='-p seed=0..2'
	@test -n "$(NB)" || { echo "make sweep needs NB=<notebook number or name>, e.g. make sweep NB=02 ARGS='-p seed=0..2'"; exit 2; }
	$(PY) -m shammie sweep $(NB) --profile $(PROFILE) $(if $(JOBS),--jobs $(JOBS)) $(ARGS)

.PHONY: student grade
student: $(STAMP) ## student copies of the exercise notebooks (no solutions, no hidden tests) into dist/student/
	$(PY) -m shammie.exercises student --out dist/student

grade: $(STAMP) ## auto-grade submitted exercise notebooks: make grade DIR=submissions/ (writes DIR/scores.csv)
	@test -n "$(DIR)" || { echo "make grade needs DIR=<folder of submitted notebooks>"; exit 2; }
	$(PY) -m shammie.exercises grade $(DIR)

# make test spreads the tests over TEST_JOBS processes (default: the cores; TEST_JOBS=0 runs them in
# this one); tests that share a module-scoped fixture (the smoke run of every notebook) stay together
TEST_JOBS ?= $(shell nproc 2>/dev/null || echo 2)

test: $(STAMP) ## unit tests + a smoke run of every notebook (TEST_JOBS=cores processes)
	$(PY) -m pytest -n $(TEST_JOBS) --dist loadgroup $(PYTEST_ARGS)

unit: $(STAMP) ## unit tests only (no notebooks, no servers)
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

smoke: $(STAMP) ## run every notebook at the smoke profile (seconds each)
	$(PY) -m shammie run --profile smoke $(if $(ONLY),--only $(ONLY)) $(ARGS)

full: $(STAMP) ## paper-scale run (GPU; CIFAR-10 under data/ or network)
	$(PY) -m shammie run --profile full $(if $(ONLY),--only $(ONLY)) $(ARGS)

lab: $(STAMP) ## open JupyterLab on notebooks/ with the project's kernel
	SHAMMIE_HOME=$(CURDIR) $(VENV)/bin/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root) $(ARGS)

bench: $(STAMP) ## benchmarks: every bench/bench_*.py against peers; keeps reports/bench/<UTC time>.json, prints each target met or MISSED
	$(PY) -m shammie bench run $(if $(ONLY),--only $(ONLY)) $(ARGS)

lint: $(STAMP) ## ruff on the library, tests, benchmarks and notebooks; notebooks stored clean
	$(VENV)/bin/ruff check lib tests bench notebooks
	$(PY) -m shammie strip --check
	$(PY) -m pytest -q tests/test_notebook_hygiene.py

format: $(STAMP) ## ruff format and fix imports
	$(VENV)/bin/ruff check --fix lib tests bench
	$(VENV)/bin/ruff format lib tests bench

strip: $(STAMP) ## remove outputs and metadata from the notebooks before committing
	$(PY) -m shammie strip

clean: ## remove build files and tool caches (keeps reports/, data/cache and the virtualenv)
	rm -rf .pytest_cache .ruff_cache build dist lib/*.egg-info
	find . -name __pycache__ -not -path "./$(VENV)/*" -prune -exec rm -rf {} +
	@if [ -d reports/runs ]; then n=$$(find reports/runs -mindepth 1 -maxdepth 1 -type d | wc -l); \
	echo "reports/ kept ($$n run(s)). Old runs: python -m shammie runs prune --keep 5; every run: make clean-reports"; fi

clean-reports: ## delete every run under reports/ (asks first; CONFIRM=yes to skip the question)
	@test -d reports || { echo "no reports/ to delete"; exit 0; }; \
	n=$$(find reports/runs -mindepth 1 -maxdepth 1 -type d 2>/dev/null | wc -l); \
	if [ "$(CONFIRM)" != yes ]; then \
	  if [ ! -t 0 ]; then echo "make clean-reports: would delete $$n run(s) in reports/; no terminal to ask: pass CONFIRM=yes"; exit 1; fi; \
	  read -r -p "Delete reports/ with its $$n run(s)? [y/N] " answer; \
	  case "$$answer" in y|Y|yes) ;; *) echo "kept reports/"; exit 0;; esac; \
	fi; \
	rm -rf reports && echo "deleted reports/ ($$n run(s))"

clean-data: ## remove generated data and checkpoints under data/cache
	rm -rf data/cache
