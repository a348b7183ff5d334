# lvw-companion: every command builds its own environment (.venv) when it is missing.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PARAMS ?= params/default.yaml
DATASETS ?= imagenette imagewoof flowers17
RESULTS ?= results
SHARED ?= ../shared/datasets
KERNEL := lvw
PAPERMILL = $(BIN)/papermill --kernel $(KERNEL) --cwd notebooks --log-output
PYTEST_ARGS ?=

.PHONY: help venv data test unit notebooks-test lint reproduce table1 clean-cache test-distributed

help:
	@echo "make test       - unit + integration tests and notebooks under nbval (tiny parameters)"
	@echo "make test-distributed - 2 CPU processes (DDP, gloo) vs 1 on tiny data"
	@echo "make reproduce  - every notebook on $(DATASETS) with $(PARAMS); writes $(RESULTS)/"
	@echo "make data       - link $(SHARED)/<name> into data/"
	@echo "make lint       - ruff"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch 2.14.1 / torchvision 0.29.1 are served from this machine's disk; a range admits them.
	$(BIN)/pip install --quiet "torch>=2.1,<=2.14.1" "torchvision>=0.16,<=0.29.1"
	$(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (lvw)" >/dev/null
	touch $(STAMP)

venv: $(STAMP)

data:
	@mkdir -p data
	@for name in imagenette imagewoof flowers17; do \
	  if [ -e data/$$name ]; then echo "data/$$name exists"; \
	  elif [ -d $(SHARED)/$$name ]; then ln -s "$$(cd $(SHARED)/$$name && pwd)" data/$$name && echo "linked data/$$name"; \
	  else echo "no $(SHARED)/$$name: place the class folders at data/$$name or set LVW_DATA"; fi; \
	done

lint: $(STAMP)
	$(BIN)/ruff check lvwlib tests benchmarks

unit: $(STAMP)
	$(BIN)/python -m pytest tests -q $(PYTEST_ARGS)

notebooks-test: $(STAMP)
	cd notebooks && ../$(BIN)/python -m pytest --nbval-lax --nbval-kernel-name $(KERNEL) -p no:cacheprovider -q .

# The README's test command: environment, lint, unit + integration tests, notebooks under nbval.
test: $(STAMP) data
	$(BIN)/ruff check lvwlib tests benchmarks
	$(BIN)/python -m pytest tests -q $(PYTEST_ARGS)
	cd notebooks && ../$(BIN)/python -m pytest --nbval-lax --nbval-kernel-name $(KERNEL) -p no:cacheprovider -q .

# Long on a 2-core machine: run it in the background (see README). Caches make reruns fast.
reproduce: $(STAMP) data
	@mkdir -p $(RESULTS)/notebooks
	set -e; for d in $(DATASETS); do \
	  $(PAPERMILL) notebooks/01_base_model.ipynb $(RESULTS)/notebooks/01_base_model_$$d.ipynb -p params_file $(PARAMS) -p dataset $$d -p results_dir $(RESULTS) -p progress False; \
	  $(PAPERMILL) notebooks/02_lvw.ipynb $(RESULTS)/notebooks/02_lvw_$$d.ipynb -p params_file $(PARAMS) -p dataset $$d -p results_dir $(RESULTS) -p progress False; \
	done
	$(MAKE) table1

table1: $(STAMP)
	@mkdir -p $(RESULTS)/notebooks
	$(PAPERMILL) notebooks/03_table1.ipynb $(RESULTS)/notebooks/03_table1.ipynb -p params_file $(PARAMS) -y "datasets: [$$(echo $(DATASETS) | sed 's/ /, /g')]" -p results_dir $(RESULTS) -p progress False

clean-cache:
	rm -rf cache

# Two CPU processes (DDP, gloo) against one on tiny data; see tests/distributed/test_ddp_gloo.py.
test-distributed: $(STAMP)
	LVW_TEST_DISTRIBUTED=1 $(BIN)/python -m pytest tests/distributed -q $(PYTEST_ARGS)
