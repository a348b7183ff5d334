"""``make reproduce`` in Python: the Table 1 cells, then every notebook, on datasets as users have them.

    python -m lvwlib reproduce --params params/tiny.yaml --datasets "/home/me/My Photos/food" \\
        --results "/tmp/my results"

Steps, in order (``--only`` runs some of them, without the up-to-date stamp):

1. ``cells``: the params are checked, then every Table 1 cell runs in parallel
   (``python -m lvwlib run``, :mod:`lvwlib.experiment.runner`) and fills the cache;
2. ``notebooks``: 01 and 02 on each dataset; 3. ``table1``: 03 on all of them;
4. ``analyses``: 06 (Figure 2) on every dataset, 07-08 on the datasets named in the params'
   ``analyses:`` section (:class:`lvwlib.core.config.AnalysesConfig`) and 09 once per case of
   ``analyses.unseen`` (written as ``09_unseen_<dataset>``), each skipped with a message when
   its dataset is not among this run's, then 11 (border diagnostic and deletion / insertion
   faithfulness) on every dataset; 5. ``report``: 10.
   ``--analyses 0`` stops after Table 1. The notebooks of steps 2-4 are independent (they read
   the cache and write their own files): they run side by side, longest first,
   ``--notebook-workers`` at once (default one per core; :func:`run_notebooks`); the report
   runs after them.

Every notebook runs through papermill's Python API (no shell: any path works) and is written
to ``<results>/notebooks/.<name>.part.ipynb``, renamed to ``<name>.ipynb`` on success and
removed on an error: a killed run leaves no half-written notebook under its final name, and
the next run removes the partial ones and the temporary files of killed writers
(:mod:`lvwlib.store.records`). A dataset's outputs are named by
:func:`lvwlib.experiment.names.results_name` and stay under ``--results``.

A full run is skipped when ``--results`` is up to date (:mod:`lvwlib.experiment.uptodate`:
same code, notebooks, Makefile, params, datasets and cache as at the last finished run, and
every result file still there); ``--force`` runs the notebooks anyway. The stamp is written last.

Datasets (``--datasets``, the Makefile's ``DATASETS``, one string) are read by
:func:`split_datasets`: the whole string when it is an existing folder (spaces kept), else a
comma-separated list when it holds a comma, else whitespace-separated names.

Relative paths (``--params``, ``--results``, dataset folders) are taken from the current
directory (``make`` runs in the project root). Paths inside the project are handed to the
notebooks relative to the project root, so the executed notebooks under ``results/notebooks``
name no machine's folders.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lvwlib.core.config import AnalysesConfig, usable_cores
from lvwlib.experiment.names import absolute_dataset, results_name
from lvwlib.experiment.orphans import exit_with_parent
from lvwlib.experiment.schema import ConfigError, coerce, load_checked_params
from lvwlib.experiment.uptodate import STAMP_NAME, current_stamp, result_sizes, stale_reason
from lvwlib.store.paths import project_root
from lvwlib.store.records import remove_stale_temporaries, write_json

STEPS = ("cells", "notebooks", "table1", "analyses", "report")
KERNEL = "lvw"  # the project's Jupyter kernel (installed by the Makefile's environment step)
CELLS_COMMAND = (sys.executable, "-m", "lvwlib", "run")
# make reproduce's datasets: the paper's Table 1 columns in its order (Oxford-IIIT Pets has no offline data)
TABLE1_DATASETS = ("imagenette", "flowers102", "imagewoof", "food101_10", "animals22")


class ReproduceError(RuntimeError):
    """A step failed; the message says which and where its details are."""


def split_datasets(text: str) -> list[str]:
    """The datasets of ``DATASETS`` as a user writes it, in order, duplicates dropped.

    - the whole text when it is an existing path: ``/home/me/My Photos/food`` (spaces kept);
    - else the comma-separated items when it holds a comma: ``imagenette, /home/me/My Photos/food``;
    - else the whitespace-separated words: ``imagenette imagewoof flowers17``.
    """
    text = text.strip()
    if not text:
        raise ValueError("no dataset given (DATASETS is empty)")
    if Path(text).expanduser().exists():
        items = [text]
    elif "," in text:
        items = [item.strip() for item in text.split(",")]
    else:
        items = text.split()
    if "" in items:
        raise ValueError(f"empty item in the dataset list {text!r}")
    return list(dict.fromkeys(items))


def _for_notebook(path: Path) -> str:
    """``path`` relative to the project root when inside it (notebooks resolve it there), else absolute."""
    root = project_root()
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


@dataclass(frozen=True)
class Run:
    """One reproduce run: what it runs on and where it writes."""

    params_file: Path  # absolute
    datasets: tuple[str, ...]  # registry names, or absolute folder paths
    results: Path  # absolute
    analyses: bool = True
    kernel: str = KERNEL

    @property
    def notebooks_dir(self) -> Path:
        return self.results / "notebooks"

    def base_parameters(self) -> dict[str, Any]:
        """The parameters every notebook but the report takes."""
        return {"params_file": _for_notebook(self.params_file), "results_dir": _for_notebook(self.results),
                "progress": False}

    def stamp_extra(self) -> str:
        """What, besides the params file and the code, changes the outputs (for the stamp)."""
        return json.dumps({"datasets": list(self.datasets), "analyses": self.analyses})


def run_notebook(run: Run, notebook: str, output_name: str, parameters: dict[str, Any]) -> Path:
    """Execute ``notebooks/<notebook>.ipynb`` into ``<results>/notebooks/<output_name>.ipynb``.

    Written under ``.<output_name>.part.ipynb`` while it runs; renamed on success, removed on
    an error (raised as :class:`ReproduceError` naming the notebook; papermill has printed it).
    """
    import papermill  # late: importing it costs a second, and `--only cells` never needs it

    run.notebooks_dir.mkdir(parents=True, exist_ok=True)
    part = run.notebooks_dir / f".{output_name}.part.ipynb"
    final = run.notebooks_dir / f"{output_name}.ipynb"
    source = project_root() / "notebooks" / f"{notebook}.ipynb"
    print(f"notebook {notebook} -> {final}", flush=True)
    try:
        papermill.execute_notebook(
            str(source), str(part), parameters=parameters, kernel_name=run.kernel,
            cwd=str(source.parent), log_output=True, progress_bar=False,
        )
    except BaseException as err:  # an error in a cell, or Ctrl-C: no partial notebook is left
        part.unlink(missing_ok=True)
        if isinstance(err, Exception):
            raise ReproduceError(f"notebook {source.name} failed ({output_name}): {err}") from err
        raise
    os.replace(part, final)
    return final


def run_cells(run: Run, workers: int | None, threads: int | None, executor: str | None) -> None:
    """Every Table 1 cell (:mod:`lvwlib.experiment.runner`), in its own process; raises when one failed."""
    command = [*CELLS_COMMAND, "--params", str(run.params_file), "--datasets", *run.datasets]
    for flag, value in (("--workers", workers), ("--threads", threads), ("--executor", executor)):
        if value is not None:
            command += [flag, str(value)]
    status = subprocess.run(command, cwd=project_root(), check=False).returncode
    if status != 0:
        raise ReproduceError(f"the Table 1 cells failed (exit status {status}); their errors are above")


@dataclass(frozen=True)
class NotebookJob:
    """One notebook execution: ``notebooks/<notebook>.ipynb`` -> ``<results>/notebooks/<output>.ipynb``."""

    notebook: str
    output: str
    parameters: dict[str, Any]


def run_job(run: Run, job: NotebookJob) -> Path:
    """:func:`run_notebook` of ``job``."""
    return run_notebook(run, job.notebook, job.output, job.parameters)


def dataset_notebook_jobs(run: Run) -> list[NotebookJob]:
    """Notebooks 01 (base model) and 02 (LVW) on each dataset."""
    return [NotebookJob(notebook, f"{notebook}_{results_name(dataset)}", {**run.base_parameters(), "dataset": dataset})
            for dataset in run.datasets for notebook in ("01_base_model", "02_lvw")]


def table1_jobs(run: Run) -> list[NotebookJob]:
    return [NotebookJob("03_table1", "03_table1", {**run.base_parameters(), "datasets": list(run.datasets)})]


def analyses_config(run: Run) -> AnalysesConfig:
    """The params' ``analyses:`` section (defaults where it has none)."""
    return coerce(AnalysesConfig, load_checked_params(run.params_file).get("analyses") or {})


UNSEEN_NOTEBOOK = "09_unseen"  # run once per case of analyses.unseen, written as 09_unseen_<dataset>


def planned_analyses(run: Run) -> list[tuple[str, dict[str, Any] | None, str]]:
    """``(output name, parameters or None when skipped, why)`` for notebooks 06-09 and 11.

    Figure 2 runs on every dataset of the run; the k sweep and the word gallery on the dataset
    the params name for them, and Figure 5 (09) on each ``analyses.unseen`` case, when its
    dataset is among this run's datasets; the border diagnostic and faithfulness (11) on every
    dataset, last (before the report). The output name is the notebook's, but for 09:
    ``09_unseen_<results name of the case's dataset>``.
    """
    cfg = analyses_config(run)
    base = run.base_parameters()
    names = {results_name(d): d for d in run.datasets}
    plan: list[tuple[str, dict[str, Any] | None, str]] = [
        ("06_figure2", {**base, "datasets": list(run.datasets)}, "every dataset of the run"),
    ]
    named: list[tuple[str, str, str, dict[str, Any]]] = [
        # the k values come from the same analyses section (the notebook reads it)
        ("07_k_sweep", "k_dataset", cfg.k_dataset, {}),
        ("08_visual_words", "words_dataset", cfg.words_dataset, {}),
    ]
    key = "unseen_dataset" if cfg.unseen_dataset is not None else "unseen"
    for case in cfg.unseen_cases():
        named.append((f"{UNSEEN_NOTEBOOK}_{results_name(absolute_dataset(case.dataset))}", key, case.dataset,
                      {"heldout_classes": list(case.classes)}))
    for output, key, dataset, extra in named:
        found = names.get(results_name(absolute_dataset(dataset)))
        if found is None:
            why = (f"its dataset {dataset!r} (params analyses.{key}) is not among this run's datasets "
                   f"({', '.join(run.datasets)})")
            plan.append((output, None, why))
        else:
            plan.append((output, {**base, "dataset": found, **extra}, f"dataset {found}"))
    plan.append(("11_faithfulness", {**base, "datasets": list(run.datasets)}, "every dataset of the run"))
    return plan


def source_notebook(output: str) -> str:
    """The notebook an analysis output name comes from (``09_unseen_<dataset>`` -> ``09_unseen``)."""
    return UNSEEN_NOTEBOOK if output.startswith(f"{UNSEEN_NOTEBOOK}_") else output


def analysis_jobs(run: Run) -> list[NotebookJob]:
    """Notebooks 06-09 and 11 (each skipped, with a message, when its dataset is not in the run)."""
    jobs = []
    for output, parameters, why in planned_analyses(run):
        if parameters is None:
            print(f"skipped {output}: {why}", flush=True)
        else:
            jobs.append(NotebookJob(source_notebook(output), output, parameters))
    return jobs


def report_job(run: Run) -> NotebookJob:
    return NotebookJob("10_report", "10_report", {"params_file": _for_notebook(run.params_file),
                                                  "results_dir": _for_notebook(run.results)})


# Minutes each notebook took in the cold make reproduce of the five Table 1 datasets at 554a433 on this
# machine, one thread each (README's time table): the pool starts the longest first, so its workers
# finish together.
NOTEBOOK_MINUTES = {"11_faithfulness": 11.5, "09_unseen": 7.2, "07_k_sweep": 5.6, "03_table1": 1.0,
                    "06_figure2": 0.9, "08_visual_words": 0.4, "02_lvw": 0.15, "01_base_model": 0.05}


def longest_first(jobs: Sequence[NotebookJob]) -> list[NotebookJob]:
    """``jobs`` by :data:`NOTEBOOK_MINUTES`, longest first (stable: equal ones keep their order)."""
    return sorted(jobs, key=lambda job: -NOTEBOOK_MINUTES.get(job.notebook, 1.0))


def notebook_workers(requested: int | None, jobs: int) -> tuple[int, int]:
    """(notebooks at once, torch threads per kernel): ``requested`` or, for None / 0, one per core;
    the cores shared among them. Never more workers than jobs."""
    cores = usable_cores()
    workers = max(1, min(requested or cores, jobs))
    return workers, max(1, cores // workers)


def _notebook_worker(threads: int, parent: int) -> None:
    """Initialiser of a notebook worker process: its kernels get ``threads`` torch / OpenMP threads
    (they inherit the environment), papermill's cell outputs reach the log, and the worker ends
    with ``parent`` (its kernel's parent poller then ends the kernel)."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    exit_with_parent(parent)


def run_notebooks(run: Run, jobs: Sequence[NotebookJob], workers: int | None = None) -> None:
    """Execute independent notebooks, several at once (``workers``; see :func:`notebook_workers`).

    The notebooks of the cells', Table 1 and analyses steps read the cache and write files of
    their own, so they run side by side, longest first, each kernel on its share of the cores
    (most of a notebook's time is one-threaded Python: plots, images, tables). One worker:
    in order, in this process, each kernel with torch's default threads. When a notebook fails
    the ones not started are dropped, the running ones finish, and the first error is raised.
    """
    if not jobs:
        return
    count, threads = notebook_workers(workers, len(jobs))
    if count == 1:
        for job in jobs:
            run_job(run, job)
        return
    print(f"{len(jobs)} notebooks, {count} at once ({threads} thread(s) each), longest first", flush=True)
    context = multiprocessing.get_context("spawn")  # a clean interpreter: no forked torch threads
    first_error: BaseException | None = None
    with ProcessPoolExecutor(count, mp_context=context, initializer=_notebook_worker,
                             initargs=(threads, os.getpid())) as pool:
        futures = [pool.submit(run_job, run, job) for job in longest_first(jobs)]
        for future in as_completed(futures):
            error = None if future.cancelled() else future.exception()
            if error is not None and first_error is None:
                first_error = error
                for waiting in futures:
                    waiting.cancel()
    if first_error is not None:
        raise first_error


def clean_partial_outputs(run: Run) -> None:
    """Partial notebooks and temporary files that killed runs left under ``--results``."""
    for part in run.notebooks_dir.glob(".*.part.ipynb"):
        part.unlink(missing_ok=True)
    for tmp in remove_stale_temporaries(run.results):
        print(f"removed stale temporary file {tmp}", flush=True)


def reproduce(
    run: Run, *, force: bool = False, only: Sequence[str] = (), workers: int | None = None,
    threads: int | None = None, executor: str | None = None, notebook_workers_requested: int | None = None,
) -> None:
    """Every step of ``make reproduce`` (or the ``only`` ones); raises :class:`ReproduceError`.
    ``notebook_workers_requested``: notebooks at once (None / 0: one per core; :func:`run_notebooks`)."""
    steps = [s for s in STEPS if s in only] if only else [
        s for s in STEPS if run.analyses or s not in ("analyses", "report")]
    try:
        load_checked_params(run.params_file)  # a wrong key fails here, before an hour of cells
    except FileNotFoundError as err:
        raise ReproduceError(f"no params file {run.params_file}") from err
    if "cells" in steps:
        run_cells(run, workers, threads, executor)
    notebook_steps = [s for s in steps if s != "cells"]
    if not notebook_steps:
        return
    root = project_root()
    run.results.mkdir(parents=True, exist_ok=True)
    full = not only
    if full and not force:
        reason = stale_reason(run.results, run.params_file, run.stamp_extra(), root)
        if reason is None:
            print(f"{run.results}: up to date (code, params, cache and every result file as at the last "
                  "finished run); notebooks skipped, FORCE=1 reruns them", flush=True)
            return
        print(f"{run.results}: running the notebooks ({reason})", flush=True)
    clean_partial_outputs(run)
    builders = {"notebooks": dataset_notebook_jobs, "table1": table1_jobs, "analyses": analysis_jobs}
    run_notebooks(run, [job for step in notebook_steps if step in builders for job in builders[step](run)],
                  notebook_workers_requested)
    if "report" in notebook_steps:  # last: it reads what the others wrote
        run_job(run, report_job(run))
    if full:  # last: a killed run never leaves a stamp
        stamp = {**current_stamp(run.params_file, run.stamp_extra(), root), "results": result_sizes(run.results)}
        write_json(run.results / STAMP_NAME, stamp)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lvwlib reproduce", description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="DATASETS: the whole string when it is an existing folder, else comma-separated items "
               "when it holds a comma, else whitespace-separated names.",
    )
    parser.add_argument("--params", default="params/default.yaml", help="params yaml")
    parser.add_argument("--datasets", nargs="+", default=[" ".join(TABLE1_DATASETS)],
                        help="datasets: registry names or paths to class folders (see below)")
    parser.add_argument("--results", default="results", help="results folder")
    parser.add_argument("--analyses", type=int, choices=[0, 1], default=1, help="0: stop after Table 1")
    parser.add_argument("--force", action="store_true", help="run the notebooks even when results are up to date")
    parser.add_argument("--only", nargs="+", choices=STEPS, default=[], help="run these steps only (no stamp)")
    parser.add_argument("--workers", type=int, help="cells at once (python -m lvwlib run)")
    parser.add_argument("--threads", type=int, help="torch threads per cell")
    parser.add_argument("--executor", help="local | submitit-local | slurm")
    parser.add_argument("--kernel", default=KERNEL, help="Jupyter kernel of the notebooks")
    parser.add_argument("--notebook-workers", type=int, default=0,
                        help="notebooks at once (0: one per core, the cores shared among them; 1: in order)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # papermill's log of each cell's output
    try:
        datasets = [absolute_dataset(d) for text in args.datasets for d in split_datasets(text)]
    except ValueError as err:
        parser.error(str(err))
    unique: dict[str, str] = {}  # one per results name: a folder and a link to it write the same results
    for dataset in datasets:
        unique.setdefault(results_name(dataset), dataset)
    run = Run(Path(os.path.abspath(args.params)), tuple(unique.values()),
              Path(os.path.abspath(args.results)), analyses=bool(args.analyses), kernel=args.kernel)
    try:
        reproduce(run, force=args.force, only=args.only, workers=args.workers, threads=args.threads,
                  executor=args.executor, notebook_workers_requested=args.notebook_workers)
    except (ReproduceError, ConfigError) as err:
        print(f"reproduce: {err}", file=sys.stderr)
        return 1
    return 0
