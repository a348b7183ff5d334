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
EXPLORE_PARAMS ?= params/quick.yaml
LAB_PORT ?= 8888
EXPLORE_PORT ?= 8866
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)  # jupyter refuses root without it (containers)
CLASSROOM := $(sort $(wildcard notebooks/classroom/*.ipynb))

.PHONY: help venv data test unit notebooks-test lint reproduce table1 clean-cache lab explore quick classroom test-browser

help:
	@echo "make test       - unit + integration tests and notebooks under nbval (tiny parameters)"
	@echo "make reproduce  - every notebook on $(DATASETS) with $(PARAMS); writes $(RESULTS)/"
	@echo "make data       - link $(SHARED)/<name> into data/"
	@echo "make lint       - ruff"
	@echo "make lab        - JupyterLab on the project kernel (builds .venv first)"
	@echo "make quick      - every method on a small imagenette subset (params/quick.yaml), for the explorer and the classroom"
	@echo "make explore    - the explorer as a web page (Voila, no code; EXPLORE_PARAMS=$(EXPLORE_PARAMS))"
	@echo "make classroom  - run the classroom notebooks on params/quick.yaml into runs/classroom/"
	@echo "make test-browser - JupyterLab + headless Chromium runs the explorer; screenshots in results/screenshots/"

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

# JupyterLab on the project kernel, from the project root (notebooks/ is one click away).
lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=. --port=$(LAB_PORT) --MappingKernelManager.default_kernel_name=$(KERNEL) $(ROOT_FLAG)

# Every method on the quick setting (imagenette subset); the explorer and the classroom read its cache.
quick: $(STAMP) data
	$(BIN)/python -m lvwlib.train_all params/quick.yaml imagenette

# The explorer alone as a web page (Voila hides the code); the parameters come from the environment.
explore: $(STAMP)
	LVW_EXPLORER_PARAMS=$(EXPLORE_PARAMS) $(BIN)/voila notebooks/04_explorer.ipynb --port=$(EXPLORE_PORT) --no-browser --Voila.ip=127.0.0.1

classroom: $(STAMP) data
	@mkdir -p runs/classroom
	set -e; for nb in $(CLASSROOM); do \
	  $(BIN)/papermill --kernel $(KERNEL) --cwd notebooks/classroom $$nb runs/classroom/$$(basename $$nb) -p params_file params/quick.yaml -p dataset imagenette; \
	done

# JupyterLab on a free port, the explorer run in headless system Chromium (apt-get install chromium).
test-browser: $(STAMP)
	LVW_BROWSER_REQUIRED=1 $(BIN)/python -m pytest tests/browser -q -rs $(PYTEST_ARGS)

# The README's test command: environment, lint, unit + integration tests, notebooks under nbval.
test: $(STAMP) data
	$(BIN)/ruff check lvwlib tests benchmarks
	$(BIN)/python -m pytest tests -q -rs $(PYTEST_ARGS)
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
