"""Run the cells of Table 1 in parallel processes, locally or on Slurm (via submitit).

A *cell* is one unit of work of :func:`lvwlib.experiment.pipeline.run_all`, run in its own
process with ``torch.set_num_threads(threads)``:

- ``features``: the cached trunk features of one dataset;
- ``base_model``: the base model of one (dataset, seed) and its Grad-CAM maps;
- ``method``: one Table 1 row for one (dataset, seed); ``protopshare`` starts
  from the trained ``protopnet`` of its seed, so it waits for that cell.

A cell is submitted as soon as the cells it needs have finished (features ->
base_model -> methods), at most ``workers`` at a time. Every artefact lands in
the usual caches (:mod:`lvwlib.store.cache`, whose per-key locks make concurrent
writers safe), so notebooks run afterwards only load. Each finished cell
prints one flushed line::

    [5/24] imagenette 0 lvw: 123.4 s (accuracy 0.91, iou 0.75), 19 cells left

A failing cell prints its traceback; the cells that need it are skipped, the
others still run, and the run fails at the end (exit status 1 from the CLI).

    python -m lvwlib.experiment.cells --params params/default.yaml \\
        --datasets imagenette imagewoof flowers17 --workers 2 --threads 1 --executor local

The engine is one setting, ``executor``: ``local`` (a process pool, spawn
context), ``submitit-local`` (submitit's LocalExecutor: one subprocess per
cell, job folders on disk) or ``slurm`` (one Slurm job per cell). The same
:func:`run_cell` runs on all three.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import dataclasses
import multiprocessing as mp
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import torch

from lvwlib.core.config import from_dict, load_params
from lvwlib.experiment.pipeline import (
    base_for_seed,
    experiment_from_params,
    prepare,
    resolve,
    run_method,
)

EXECUTORS = ("local", "submitit-local", "slurm")


@dataclass(frozen=True)
class CellsConfig:
    """How cells are run; the params yaml's ``cells:`` section, overridden by CLI flags.

    None of these fields enters a cache key: the engine never changes a result.
    """

    executor: str = "local"  # local (process pool) | submitit-local | slurm
    workers: int = 0  # cells running at once; 0 = this machine's cores // threads
    threads: int = 1  # torch threads per cell process (2x1 beat 1x2 on 2 cores: benchmarks/bench_cells.py)
    folder: str = "logs/cells"  # submitit job folder (pickled cells, per-job stdout/stderr)
    poll_s: float = 1.0  # seconds between polls of submitit jobs
    timeout_min: int = 240  # submitit / Slurm time limit of one cell
    partition: str | None = None  # Slurm partition (None: the cluster's default)
    gpus_per_node: int = 0  # Slurm GPUs per cell (the pipeline itself runs on CPU)
    cpus_per_task: int = 0  # Slurm CPUs per cell; 0 = threads
    mem_gb: float | None = None  # Slurm memory per cell (None: the cluster's default)
    slurm_additional: dict[str, Any] = field(default_factory=dict)  # verbatim sbatch options, e.g. {account: x, qos: y}

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise ValueError(f"cells.executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")
        if self.workers < 0 or self.threads < 1:
            raise ValueError(f"cells.workers must be >= 0 and cells.threads >= 1, got {self.workers}, {self.threads}")

    @property
    def max_workers(self) -> int:
        """``workers``, or this machine's usable cores divided by ``threads`` when 0."""
        if self.workers:
            return self.workers
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return max(1, cores // self.threads)


@dataclass(frozen=True, order=True)
class Cell:
    """One unit of work: ``stage`` is features, base_model or method."""

    dataset: str
    stage: str
    seed: int = -1  # -1 for features (seed independent)
    method: str = ""  # Table 1 row, for stage == "method"

    @property
    def name(self) -> str:
        """As in the progress lines: ``imagenette - features``, ``imagenette 0 lvw``."""
        if self.stage == "features":
            return f"{self.dataset} - features"
        return f"{self.dataset} {self.seed} {self.method or self.stage}"


@dataclass
class CellOutcome:
    """What a cell process sends back: wall time, a few numbers, or the error."""

    seconds: float
    summary: dict[str, float] = field(default_factory=dict)  # e.g. accuracy, iou
    error: str | None = None  # formatted traceback of a failed cell


@dataclass
class RunReport:
    """Every cell's outcome (None: skipped because a cell it needs failed) and the wall time."""

    outcomes: dict[Cell, CellOutcome | None]
    wall_s: float

    @property
    def failed(self) -> list[Cell]:
        return [c for c, o in self.outcomes.items() if o is None or o.error is not None]

    @property
    def ok(self) -> bool:
        return not self.failed


def plan(params: dict[str, Any], datasets: Sequence[str]) -> dict[Cell, tuple[Cell, ...]]:
    """Every cell of ``datasets`` and the cells it needs, in run_all's order.

    Seeds and methods come from each dataset's experiment (per-dataset overrides included).
    """
    deps: dict[Cell, tuple[Cell, ...]] = {}
    for dataset in datasets:
        exp = experiment_from_params(params, dataset)
        features = Cell(dataset, "features")
        deps[features] = ()
        for seed in exp.seeds:
            base = Cell(dataset, "base_model", seed)
            deps[base] = (features,)
            for method in exp.methods:
                needs = [base]
                if method == "protopshare" and "protopnet" in exp.methods:
                    # ProtoPShare merges the trained ProtoPNet: train that once, in its own cell.
                    needs.append(Cell(dataset, "method", seed, "protopnet"))
                deps[Cell(dataset, "method", seed, method)] = tuple(needs)
    return deps


def run_cell(cell: Cell, params: dict[str, Any], threads: int) -> CellOutcome:
    """Run one cell in this process (a pool worker or a submitit job); never raises.

    Earlier stages are loaded from the cache (they ran in their own cells).
    """
    start = time.perf_counter()
    try:
        torch.set_num_threads(threads)
        exp = experiment_from_params(params, cell.dataset)
        prep = prepare(exp, progress=False)
        summary: dict[str, float] = {}
        if cell.stage == "features":
            summary = {"train images": float(len(prep.train_labels)), "test images": float(len(prep.test_labels))}
        elif cell.stage == "base_model":
            base = base_for_seed(prep, cell.seed, progress=False)
            if base.history and "train_acc" in base.history[-1]:
                summary = {"train_acc": float(base.history[-1]["train_acc"])}
        elif cell.stage == "method":
            base = base_for_seed(prep, cell.seed, progress=False)
            result = run_method(prep, base, cell.method, cell.seed, progress=False)
            summary = {"accuracy": float(result["accuracy"]), "iou": float(result["iou"])}
        else:
            raise ValueError(f"unknown cell stage {cell.stage!r}")
        return CellOutcome(time.perf_counter() - start, summary)
    except Exception:
        return CellOutcome(time.perf_counter() - start, error=traceback.format_exc())


class _Engine:
    """Submit cells, wait for some to finish; one subclass per executor."""

    def submit(self, cell: Cell, params: dict[str, Any], threads: int) -> Any:
        raise NotImplementedError

    def wait(self, handles: Sequence[Any]) -> list[Any]:
        """Block until at least one handle is done; return the done ones."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class _LocalEngine(_Engine):
    def __init__(self, workers: int) -> None:
        # spawn: a fresh interpreter per worker (fork after torch has started threads can hang)
        self.pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"))

    def submit(self, cell: Cell, params: dict[str, Any], threads: int) -> cf.Future:
        return self.pool.submit(run_cell, cell, params, threads)

    def wait(self, handles: Sequence[Any]) -> list[Any]:
        done, _ = cf.wait(handles, return_when=cf.FIRST_COMPLETED)
        return list(done)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class _SubmititEngine(_Engine):
    def __init__(self, cfg: CellsConfig) -> None:
        import submitit  # only this engine needs it

        cluster = "slurm" if cfg.executor == "slurm" else "local"
        self.executor = submitit.AutoExecutor(folder=str(resolve(cfg.folder)), cluster=cluster)
        options: dict[str, Any] = {
            "name": "lvw-cell",
            "timeout_min": cfg.timeout_min,
            "cpus_per_task": cfg.cpus_per_task or cfg.threads,
        }
        if cluster == "slurm":
            # AutoExecutor drops slurm_* options on other clusters; set them only here anyway
            options["gpus_per_node"] = cfg.gpus_per_node
            if cfg.partition:
                options["slurm_partition"] = cfg.partition
            if cfg.mem_gb:
                options["mem_gb"] = cfg.mem_gb
            if cfg.slurm_additional:
                options["slurm_additional_parameters"] = dict(cfg.slurm_additional)
        self.executor.update_parameters(**options)
        self.poll_s = cfg.poll_s

    def submit(self, cell: Cell, params: dict[str, Any], threads: int) -> Any:
        return self.executor.submit(run_cell, cell, params, threads)

    def wait(self, handles: Sequence[Any]) -> list[Any]:
        while True:
            done = [h for h in handles if h.done()]
            if done:
                return done
            time.sleep(self.poll_s)


def _engine(cfg: CellsConfig) -> _Engine:
    return _LocalEngine(cfg.max_workers) if cfg.executor == "local" else _SubmititEngine(cfg)


def _describe(summary: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) and v % 1 else f"{k} {v:g}" for k, v in summary.items())


def run_cells(
    params: dict[str, Any],
    datasets: Sequence[str],
    cfg: CellsConfig = CellsConfig(),
    out: TextIO | None = None,
    engine: Callable[[CellsConfig], _Engine] = _engine,
) -> RunReport:
    """Run every cell of ``datasets`` with ``cfg``'s engine; one progress line per cell to ``out``.

    Returns the report (it does not raise on failed cells: see :attr:`RunReport.ok`).
    """
    out = out or sys.stdout

    def log(line: str) -> None:
        print(line, file=out, flush=True)

    deps = plan(params, datasets)
    total, workers = len(deps), cfg.max_workers
    pending = list(deps)  # not yet submitted, in plan order
    running: dict[Any, Cell] = {}
    outcomes: dict[Cell, CellOutcome | None] = {}
    start = time.perf_counter()
    log(f"{total} cells of {', '.join(datasets)} on {cfg.executor}: {workers} workers x {cfg.threads} threads")

    def finish(cell: Cell, outcome: CellOutcome | None, line: str) -> None:
        outcomes[cell] = outcome
        log(f"[{len(outcomes)}/{total}] {cell.name}: {line}, {total - len(outcomes)} cells left")

    eng = engine(cfg)
    try:
        while pending or running:
            # skip cells whose needs failed; submit those whose needs all succeeded
            for cell in list(pending):
                broken = [d for d in deps[cell] if d in outcomes and (outcomes[d] is None or outcomes[d].error)]
                if broken:
                    pending.remove(cell)
                    finish(cell, None, f"skipped (needs {broken[0].name}, which failed)")
                elif len(running) < workers and all(d in outcomes for d in deps[cell]):
                    pending.remove(cell)
                    try:
                        running[eng.submit(cell, params, cfg.threads)] = cell
                    except Exception:  # e.g. a pool broken by a worker that died, sbatch refusing
                        finish(cell, CellOutcome(0.0, error=traceback.format_exc()), "FAILED to submit")
                        log("    " + traceback.format_exc().rstrip().replace("\n", "\n    "))
            if not running:
                continue  # only skips happened this round; loop to resolve the rest
            for handle in eng.wait(list(running)):
                cell = running.pop(handle)
                try:
                    outcome = handle.result()
                except Exception:  # the process itself died (OOM, Slurm kill, broken pool)
                    outcome = CellOutcome(float("nan"), error=traceback.format_exc())
                if outcome.error:
                    finish(cell, outcome, f"FAILED after {outcome.seconds:.1f} s")
                    log("    " + outcome.error.rstrip().replace("\n", "\n    "))
                else:
                    described = _describe(outcome.summary)
                    finish(cell, outcome, f"{outcome.seconds:.1f} s" + (f" ({described})" if described else ""))
    finally:
        eng.close()
    report = RunReport(outcomes, time.perf_counter() - start)
    status = "ok" if report.ok else f"{len(report.failed)} cells failed or skipped"
    log(f"{total} cells in {report.wall_s:.1f} s wall: {status}")
    return report


def cells_config(params: dict[str, Any], **overrides: Any) -> CellsConfig:
    """The params' ``cells:`` section with the non-None ``overrides`` (CLI flags) on top."""
    cfg = from_dict(CellsConfig, params.get("cells"))
    return dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lvwlib.experiment.cells", description="Run Table 1 cells in parallel (local processes or Slurm)."
    )
    parser.add_argument("--params", default="params/default.yaml", help="params yaml (its cells: section is read)")
    parser.add_argument("--datasets", nargs="+", help="datasets to run (default: the params' data.name)")
    parser.add_argument("--seeds", nargs="+", type=int, help="override the params' seeds")
    parser.add_argument("--methods", nargs="+", help="override the params' methods (Table 1 rows)")
    parser.add_argument("--executor", choices=EXECUTORS)
    parser.add_argument("--workers", type=int, help="cells at once (0: cores // threads)")
    parser.add_argument("--threads", type=int, help="torch threads per cell")
    parser.add_argument("--folder", help="submitit job folder")
    parser.add_argument("--partition", help="Slurm partition")
    parser.add_argument("--timeout-min", type=int, help="time limit of one cell (submitit / Slurm)")
    parser.add_argument("--gpus-per-node", type=int, help="Slurm GPUs per cell")
    parser.add_argument("--cpus-per-task", type=int, help="Slurm CPUs per cell (0: threads)")
    parser.add_argument("--mem-gb", type=float, help="Slurm memory per cell")
    args = parser.parse_args(argv)
    params = load_params(resolve(args.params))
    if args.seeds:
        params["seeds"] = args.seeds
    if args.methods:
        params["methods"] = args.methods
    cfg = cells_config(
        params, executor=args.executor, workers=args.workers, threads=args.threads, folder=args.folder,
        partition=args.partition, timeout_min=args.timeout_min, gpus_per_node=args.gpus_per_node,
        cpus_per_task=args.cpus_per_task, mem_gb=args.mem_gb,
    )
    datasets = args.datasets or [experiment_from_params(params).run.data.name]
    return 0 if run_cells(params, datasets, cfg).ok else 1


if __name__ == "__main__":
    sys.exit(main())
