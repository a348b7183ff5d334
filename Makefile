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
# Table 1 cells run in parallel before the notebooks (lvwlib.experiment.cells): WORKERS processes x THREADS
# torch threads each, on EXECUTOR (local | submitit-local | slurm). WORKERS defaults to the cores.
WORKERS ?= $(shell nproc 2>/dev/null || echo 1)
THREADS ?= 1
EXECUTOR ?= local
# ANALYSES=0 stops make reproduce after Table 1 (Figures 2-5 and the report are skipped).
ANALYSES ?= 1

EXPLORE_PARAMS ?= params/quick.yaml
LAB_PORT ?= 8888
EXPLORE_PORT ?= 8866
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)  # jupyter refuses root without it (containers)
CLASSROOM := $(sort $(wildcard notebooks/classroom/*.ipynb))

.PHONY: help venv data test unit notebooks-test lint reproduce reproduce-notebooks table1 cells check-params analyses report clean-cache lab explore quick classroom test-browser test-distributed

help:
	@echo "make test       - unit + integration tests and notebooks under nbval (tiny parameters)"
	@echo "make test-distributed - 2 CPU processes (DDP, gloo) vs 1 on tiny data"
	@echo "make reproduce  - every notebook on $(DATASETS) with $(PARAMS); writes $(RESULTS)/"
	@echo "make cells      - only the Table 1 cells, $(WORKERS) processes x $(THREADS) threads on $(EXECUTOR) (fills cache/)"
	@echo "make analyses   - Figures 2-5, word gallery and $(RESULTS)/README.md (after Table 1)"
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
	# JupyterLab of this venv: no "get notified about Jupyter news?" toast over a class's screen
	mkdir -p $(VENV)/share/jupyter/lab/settings
	echo '{"@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": false}}' \
	  > $(VENV)/share/jupyter/lab/settings/overrides.json
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

# Every method on the quick setting (imagenette subset), as parallel cells (2x1 beat 1x2 threads);
# the explorer and the classroom read its cache.
quick:
	$(MAKE) cells PARAMS=params/quick.yaml DATASETS=imagenette EXECUTOR=local

# The explorer alone as a web page (Voila hides the code); the parameters come from the environment.
explore: $(STAMP)
	LVW_EXPLORER_PARAMS=$(EXPLORE_PARAMS) $(BIN)/voila notebooks/04_explorer.ipynb --port=$(EXPLORE_PORT) --no-browser --Voila.ip=127.0.0.1

classroom: $(STAMP) data
	@mkdir -p runs/classroom
	set -e; for nb in $(CLASSROOM); do \
	  $(BIN)/papermill --kernel $(KERNEL) --cwd notebooks/classroom $$nb runs/classroom/$$(basename $$nb) -p params_file params/quick.yaml -p dataset imagenette; \
	done

# JupyterLab on a free port, the explorer run in headless system Chromium (apt-get install chromium).
SCREENSHOTS ?= results/screenshots
test-browser: $(STAMP)
	LVW_BROWSER_REQUIRED=1 LVW_SCREENSHOTS=$(abspath $(SCREENSHOTS)) $(BIN)/python -m pytest tests/browser -q -rs $(PYTEST_ARGS)

# The README's test command: environment, lint, unit + integration tests, notebooks under nbval.
test: $(STAMP) data
	$(BIN)/ruff check lvwlib tests benchmarks
	$(BIN)/python -m pytest tests -q -rs $(PYTEST_ARGS)
	cd notebooks && ../$(BIN)/python -m pytest --nbval-lax --nbval-kernel-name $(KERNEL) -p no:cacheprovider -q .

# Long on a 2-core machine: run it in the background (see README). Caches make reruns fast.
# The params are checked first; the cells fill the caches in parallel; the notebooks then only load.
# A dataset is a registry name or a path to class folders; its outputs are named by
# `python -m lvwlib.experiment.names name` (a path -> <base name>-<hash>) and stay under $(RESULTS).
# papermill writes its output notebook cell by cell, so each notebook is written to
# .<name>.part.ipynb and renamed on success (removed on an error: papermill prints it):
# a killed run leaves no half-written notebook under its final name, and the next run
# removes the partial ones and the temporary files of killed writers (lvwlib.store.records).
# A warm rerun skips the notebooks when results/ is up to date (lvwlib.experiment.uptodate: same code,
# notebooks, Makefile, params, make variables and cache as at the last finished run, and
# every result file still there); FORCE=1 runs them anyway. The stamp is written last.
FORCE ?= 0
UPTODATE = $(BIN)/python -m lvwlib.experiment.uptodate
UPTODATE_ARGS = $(RESULTS) --params $(PARAMS) --extra "$(DATASETS) | $(ANALYSES) | $(K_DATASET) $(K_VALUES) | $(WORDS_DATASET) | $(UNSEEN_DATASET) $(UNSEEN_CLASSES)"
reproduce: $(STAMP) data check-params cells
	@mkdir -p $(RESULTS)
	@if [ "$(FORCE)" != 1 ] && $(UPTODATE) check $(UPTODATE_ARGS); then exit 0; fi; \
	  $(MAKE) reproduce-notebooks && $(UPTODATE) write $(UPTODATE_ARGS)

reproduce-notebooks: $(STAMP) data
	@mkdir -p $(RESULTS)/notebooks
	rm -f $(RESULTS)/notebooks/.*.part.ipynb
	$(BIN)/python -m lvwlib.store.records clean $(RESULTS)
	set -e; for d in $(DATASETS); do \
	  d=$$($(BIN)/python -m lvwlib.experiment.names abs "$$d"); n=$$($(BIN)/python -m lvwlib.experiment.names name "$$d"); \
	  for nb in 01_base_model 02_lvw; do \
	    $(PAPERMILL) notebooks/$$nb.ipynb $(RESULTS)/notebooks/.$${nb}_$$n.part.ipynb -p params_file $(PARAMS) -p dataset "$$d" -p results_dir $(RESULTS) -p progress False \
	      || { rm -f $(RESULTS)/notebooks/.$${nb}_$$n.part.ipynb; exit 1; }; \
	    mv -f $(RESULTS)/notebooks/.$${nb}_$$n.part.ipynb $(RESULTS)/notebooks/$${nb}_$$n.ipynb; \
	  done; \
	done
	$(MAKE) table1
	if [ "$(ANALYSES)" != 0 ]; then $(MAKE) analyses; fi

# Figures 2-5, the word gallery and the report (issue 7); after Table 1, whose cached models they reuse.
# Fig 3(a) on imagewoof (Stanford Dogs stand-in); Fig 4 on imagenette (STL10 stand-in); Fig 5 holds out
# English foxhound and Australian terrier (close relatives of the seen beagle and Border terrier).
K_DATASET ?= imagewoof
K_VALUES ?= 1, 3, 5, 10, 20, 50
WORDS_DATASET ?= imagenette
UNSEEN_DATASET ?= imagewoof
UNSEEN_CLASSES ?= n02089973, n02096294
analyses: $(STAMP) data
	@mkdir -p $(RESULTS)/notebooks
	$(PAPERMILL) notebooks/06_figure2.ipynb $(RESULTS)/notebooks/06_figure2.ipynb -p params_file $(PARAMS) -y "datasets: [$$(echo $(DATASETS) | sed 's/ /, /g')]" -p results_dir $(RESULTS) -p progress False
	$(PAPERMILL) notebooks/07_k_sweep.ipynb $(RESULTS)/notebooks/07_k_sweep.ipynb -p params_file $(PARAMS) -p dataset $(K_DATASET) -y "ks: [$(K_VALUES)]" -p results_dir $(RESULTS) -p progress False
	$(PAPERMILL) notebooks/08_visual_words.ipynb $(RESULTS)/notebooks/08_visual_words.ipynb -p params_file $(PARAMS) -p dataset $(WORDS_DATASET) -p results_dir $(RESULTS) -p progress False
	$(PAPERMILL) notebooks/09_unseen.ipynb $(RESULTS)/notebooks/09_unseen.ipynb -p params_file $(PARAMS) -p dataset $(UNSEEN_DATASET) -y "holdout_classes: [$(UNSEEN_CLASSES)]" -p results_dir $(RESULTS) -p progress False
	$(MAKE) report

report: $(STAMP)
	@mkdir -p $(RESULTS)/notebooks
	$(PAPERMILL) notebooks/10_report.ipynb $(RESULTS)/notebooks/10_report.ipynb -p results_dir $(RESULTS)

table1: $(STAMP)
	@mkdir -p $(RESULTS)/notebooks
	$(PAPERMILL) notebooks/03_table1.ipynb $(RESULTS)/notebooks/.03_table1.part.ipynb -p params_file $(PARAMS) -y "datasets: $$($(BIN)/python -m lvwlib.experiment.names list $(DATASETS))" -p results_dir $(RESULTS) -p progress False \
	  || { rm -f $(RESULTS)/notebooks/.03_table1.part.ipynb; exit 1; }
	mv -f $(RESULTS)/notebooks/.03_table1.part.ipynb $(RESULTS)/notebooks/03_table1.ipynb

cells: $(STAMP) data check-params
	$(BIN)/python -m lvwlib.experiment.cells --params $(PARAMS) --datasets $(DATASETS) --workers $(WORKERS) --threads $(THREADS) --executor $(EXECUTOR)

check-params: $(STAMP)
	$(BIN)/python -m lvwlib.experiment.schema $(PARAMS)

clean-cache:
	rm -rf cache

# Two CPU processes (DDP, gloo) against one on tiny data; see tests/distributed/test_ddp_gloo.py.
test-distributed: $(STAMP)
	LVW_TEST_DISTRIBUTED=1 $(BIN)/python -m pytest tests/distributed -q $(PYTEST_ARGS)
