# lvw-companion: every command builds its own environment (.venv) when it is missing.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PARAMS ?= params/default.yaml
DATASETS ?= imagenette flowers102 imagewoof food101_10 animals22
RESULTS ?= results
SHARED ?= ../shared/datasets
KERNEL := lvw
PYTEST_ARGS ?=
# Table 1 cells run in parallel before the notebooks (python -m lvwlib run): WORKERS processes x THREADS
# torch threads each, on EXECUTOR (local | submitit-local | slurm). WORKERS defaults to the cores.
WORKERS ?= $(shell nproc 2>/dev/null || echo 1)
THREADS ?= 1
EXECUTOR ?= local
# ANALYSES=0 stops make reproduce after Table 1 (Figures 2-5 and the report are skipped).
ANALYSES ?= 1
# Notebooks at once after the cells (0: one per core, the cores shared among their kernels; 1: in order).
NOTEBOOK_WORKERS ?= 0

EXPLORE_PARAMS ?= params/quick.yaml
LAB_PORT ?= 8888
EXPLORE_PORT ?= 8866
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)  # jupyter refuses root without it (containers)
CLASSROOM := $(sort $(wildcard notebooks/classroom/*.ipynb))

.PHONY: help venv data test test-threads unit notebooks-test lint benchmark reproduce table1 cells check-params analyses report compare clean-cache lab explore quick classroom test-browser test-distributed

help:
	@echo "make test       - unit + integration tests and notebooks under nbval (tiny parameters)"
	@echo "make test-threads - the unit and integration tests on 3 torch threads (another CPU's rounding, as a proxy)"
	@echo "make test-distributed - 2 CPU processes (DDP, gloo) vs 1 on tiny data"
	@echo "make reproduce  - every notebook on $(DATASETS) with $(PARAMS); writes $(RESULTS)/"
	@echo "                  (DATASETS=\"/home/me/My Photos/food\": a folder, spaces kept; lists: commas or spaces)"
	@echo "make compare RESULTS=<rerun> - a rerun's Table 1 beside the committed one, cell by cell"
	@echo "make cells      - only the Table 1 cells, $(WORKERS) processes x $(THREADS) threads on $(EXECUTOR) (fills cache/)"
	@echo "make analyses   - Figures 2-5, word gallery and $(RESULTS)/README.md (after Table 1)"
	@echo "make data       - link $(SHARED)/<name> into data/"
	@echo "make lint       - ruff"
	@echo "make benchmark  - every method's training step: images/s, FLOPs, % of the fp32 matmul peak (~1-3 min)"
	@echo "make lab        - JupyterLab on the project kernel (builds .venv first)"
	@echo "make quick      - every method on a small imagenette subset (params/quick.yaml), for the explorer and the classroom"
	@echo "make explore    - the explorer as a web page (Voila, no code; EXPLORE_PARAMS=$(EXPLORE_PARAMS))"
	@echo "make classroom  - run the classroom notebooks on params/quick.yaml into runs/classroom/"
	@echo "make test-browser - JupyterLab + headless Chromium runs the explorer; screenshots in results/screenshots/"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# torch 2.14.1 / torchvision 0.29.1 are served from this machine's disk; a range admits them.
	# uv installs what pip would (the same versions: --index-strategy unsafe-best-match takes the best
	# version over every index, as pip does; pip's index, wheel-folder, constraint and certificate
	# settings passed on by .ci/pip_index_flags.py) in ~40 s instead of pip's ~100 s. Byte-compiled:
	# with PYTHONDONTWRITEBYTECODE set (as on this machine) nothing would ever write the .pyc files,
	# and every process would compile torch anew. Where uv cannot install, pip does.
	$(BIN)/pip install --quiet "uv>=0.13.9,<0.14" && \
	  $(BIN)/uv pip install --quiet --python $(BIN)/python --compile-bytecode --index-strategy unsafe-best-match \
	    $$($(BIN)/python .ci/pip_index_flags.py $(BIN)/pip) \
	    "torch>=2.1,<=2.14.1" "torchvision>=0.16,<=0.29.1" -e ".[dev]" || \
	  { echo "make venv: uv failed, installing with pip"; \
	    $(BIN)/pip install --quiet --upgrade pip && \
	    $(BIN)/pip install --quiet "torch>=2.1,<=2.14.1" "torchvision>=0.16,<=0.29.1" && \
	    $(BIN)/pip install --quiet -e ".[dev]"; }
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (lvw)" >/dev/null
	# JupyterLab of this venv: no "get notified about Jupyter news?" toast over a class's screen
	mkdir -p $(VENV)/share/jupyter/lab/settings
	echo '{"@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": false}}' \
	  > $(VENV)/share/jupyter/lab/settings/overrides.json
	touch $(STAMP)

venv: $(STAMP)

data:
	@mkdir -p data
	@for name in imagenette imagewoof flowers17 flowers102 food101_10 animals22; do \
	  if [ -e data/$$name ]; then echo "data/$$name exists"; \
	  elif [ -d $(SHARED)/$$name ]; then ln -s "$$(cd $(SHARED)/$$name && pwd)" data/$$name && echo "linked data/$$name"; \
	  else echo "no $(SHARED)/$$name: place the class folders at data/$$name or set LVW_DATA"; fi; \
	done

lint: $(STAMP)
	$(BIN)/ruff check lvwlib tests benchmarks .ci

# Every registered method's training step against this machine's measured fp32 matmul peak
# (benchmarks/trainer_benchmark.py; a few steps per method, epochs extrapolated).
BENCH_THREADS ?= 1
BENCH_OUT ?= benchmarks/trainer_benchmark.md
benchmark: $(STAMP)
	$(BIN)/python benchmarks/trainer_benchmark.py --threads $(BENCH_THREADS) --out $(call quote,$(BENCH_OUT))

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
# pytest-xdist: one worker per core, a test file per worker (its module fixtures are built once).
TEST_WORKERS ?= auto
test: $(STAMP) data
	$(BIN)/ruff check lvwlib tests benchmarks .ci
	$(BIN)/python -m pytest tests -q -rs -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)
	cd notebooks && ../$(BIN)/python -m pytest --nbval-lax --nbval-kernel-name $(KERNEL) -p no:cacheprovider -q -n $(TEST_WORKERS) --dist loadfile .

# The tests again on 3 torch threads: floats summed in other orders, this machine's stand-in for
# another CPU (tests/conftest.py); every numeric comparison must pass here too.
test-threads: $(STAMP) data
	LVW_TEST_THREADS=3 $(BIN)/python -m pytest tests -q -rs -m "not slow" $(PYTEST_ARGS)

# A make value as ONE shell word: single-quoted, each ' written as '\'' (paths with spaces, $, quotes).
quote = '$(subst ','\'',$(1))'

# Long on a 2-core machine: run it in the background (see README). Caches make reruns fast.
# lvwlib.experiment.reproduce checks the params, runs the Table 1 cells in parallel (they fill
# the caches), then every notebook (they only load; NOTEBOOK_WORKERS at once, longest first, the
# report last), each written as .<name>.part.ipynb and
# renamed on success; a warm rerun skips the notebooks when RESULTS is up to date (FORCE=1 runs
# them anyway). DATASETS is one string: the whole of it when it is an existing folder
# (DATASETS="/home/me/My Photos/food"), else comma-separated items when it holds a comma,
# else whitespace-separated names. A folder's outputs are named by
# `python -m lvwlib names name` (<base name>-<hash>) and stay under RESULTS.
# The analyses' datasets (k sweep, word gallery, unseen classes) are the params' analyses:
# section; each is skipped, with a message, when its dataset is not among DATASETS.
FORCE ?= 0
REPRODUCE = $(BIN)/python -m lvwlib reproduce --params $(call quote,$(PARAMS)) \
  --datasets $(call quote,$(DATASETS)) --results $(call quote,$(RESULTS))
CELL_FLAGS = --workers $(WORKERS) --threads $(THREADS) --executor $(EXECUTOR)
reproduce: $(STAMP) data
	$(REPRODUCE) --analyses $(ANALYSES) $(CELL_FLAGS) --notebook-workers $(NOTEBOOK_WORKERS) \
	  $(if $(filter 1,$(FORCE)),--force,)

# The steps alone (no up-to-date stamp): the cells, Table 1, the analyses (Figures 2-5, the
# word gallery, then the report; after Table 1, whose cached models they reuse), the report.
cells: $(STAMP) data
	$(REPRODUCE) --only cells $(CELL_FLAGS)

table1: $(STAMP)
	$(REPRODUCE) --only table1

analyses: $(STAMP) data
	$(REPRODUCE) --only analyses report --notebook-workers $(NOTEBOOK_WORKERS)

report: $(STAMP)
	$(REPRODUCE) --only report

# A rerun's Table 1 beside the committed one (REFERENCE, default results/ as committed in git),
# cell by cell, with whether each mean lies within the committed spread over seeds.
REFERENCE ?= results
compare: $(STAMP)
	$(BIN)/python -m lvwlib compare $(call quote,$(RESULTS)) --reference $(call quote,$(REFERENCE))

check-params: $(STAMP)
	$(BIN)/python -m lvwlib schema $(call quote,$(PARAMS))

clean-cache:
	rm -rf cache

# Two CPU processes (DDP, gloo) against one on tiny data; see tests/distributed/test_ddp_gloo.py.
test-distributed: $(STAMP)
	LVW_TEST_DISTRIBUTED=1 $(BIN)/python -m pytest tests/distributed -q $(PYTEST_ARGS)
