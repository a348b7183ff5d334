"""The runner: one plan of cells for every way of running Table 1, and interchangeable executors.

A *cell* is one unit of work on one experiment (a dataset, or a calibration variant):

- ``features``: the cached trunk features (:func:`lvwlib.experiment.stages.prepare`);
- ``base_model``: the base model of one seed and its Grad-CAM maps;
- ``method``: one Table 1 row for one seed (train or load, store, evaluate); a method
  that builds on another (:attr:`lvwlib.methods.registry.Method.needs`, e.g.
  ProtoPShare on ProtoPNet) waits for that cell when it is in the run.

:func:`plan` lists the cells and what each needs. The same :func:`run_cell` runs them
on every executor (``cells.executor`` in the params, or ``--executor``):

- ``inline``: in this process, one after the other (notebooks, tests, calibration,
  "train everything"; :func:`run_all` is this with errors raised);
- ``local``: a pool of spawned processes on this machine;
- ``submitit-local``: submitit's LocalExecutor (one subprocess per cell, job folders on disk);
- ``slurm``: one Slurm job per cell (submitit);
- ``torchrun``: one ``torchrun --nproc_per_node N -m lvwlib launch --cell ...`` job per cell,
  so a method that trains under DDP uses N processes (GPUs); the others run in one.

A cell is submitted as soon as the cells it needs have finished, at most ``workers``
at a time. Every artefact lands in the caches (:mod:`lvwlib.store.cache`, whose
per-key locks make concurrent writers safe), under the keys of
:mod:`lvwlib.experiment.keys`, so notebooks run afterwards only load. Each finished
cell prints one flushed line::

    [5/24] imagenette 0 lvw: 123.4 s (accuracy 0.91, iou 0.75), 19 cells left

A failing cell prints its traceback; the cells that need it are skipped, the others
still run, and the run fails at the end (exit status 1 from the command line)::

    python -m lvwlib run --params params/default.yaml \\
        --datasets imagenette imagewoof flowers17 --workers 2 --threads 1 --executor local

A method registered by a module of your own runs in the ``inline`` executor; the
process executors import only the built-in methods.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import dataclasses
import multiprocessing as mp
import os
import pickle
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import torch

from lvwlib.core.config import EXECUTORS, CellsConfig, from_dict, load_params
from lvwlib.data import load_dataset
from lvwlib.experiment.cached_cells import CachedCells
from lvwlib.experiment.config import Experiment, experiment_from_params
from lvwlib.experiment.orphans import exit_with_parent
from lvwlib.experiment.stages import base_for_seed, prepare, run_method
from lvwlib.methods import registry
from lvwlib.store.paths import resolve
from lvwlib.store.records import save_with


@dataclass(frozen=True, order=True)
class Cell:
    """One unit of work: ``stage`` is features, base_model or method."""

    experiment: str  # the experiment's name in the run (its dataset, or dataset and variant)
    stage: str
    seed: int = -1  # -1 for features (seed independent)
    method: str = ""  # Table 1 row, for stage == "method"

    @property
    def name(self) -> str:
        """As in the progress lines: ``imagenette - features``, ``imagenette 0 lvw``."""
        if self.stage == "features":
            return f"{self.experiment} - features"
        return f"{self.experiment} {self.seed} {self.method or self.stage}"


@dataclass
class CellOutcome:
    """What a cell sends back: wall time, a few numbers, the result row, or the error."""

    seconds: float
    summary: dict[str, float] = field(default_factory=dict)  # e.g. accuracy, iou
    error: str | None = None  # formatted traceback of a failed cell
    result: dict[str, Any] | None = None  # the Table 1 row of a method cell


@dataclass
class RunReport:
    """Every cell's outcome (None: skipped because a cell it needs failed) and the wall time."""

    outcomes: dict[Cell, CellOutcome | None]  # in plan order
    wall_s: float

    @property
    def failed(self) -> list[Cell]:
        return [c for c, o in self.outcomes.items() if o is None or o.error is not None]

    @property
    def ok(self) -> bool:
        return not self.failed

    def results(self) -> list[dict[str, Any]]:
        """The result rows of the method cells that ran, in plan order."""
        return [o.result for c, o in self.outcomes.items() if c.stage == "method" and o is not None
                and o.result is not None]


def as_experiments(experiments: Experiment | Sequence[Experiment] | Mapping[str, Experiment]) -> dict[str, Experiment]:
    """Experiments by name: a mapping as given, else each named by its dataset (which must then differ)."""
    if isinstance(experiments, Mapping):
        return dict(experiments)
    items = [experiments] if isinstance(experiments, Experiment) else list(experiments)
    named = {exp.dataset: exp for exp in items}
    if len(named) != len(items):
        raise ValueError("two experiments of one dataset: give them names (a mapping name -> experiment)")
    return named


def plan(experiments: Experiment | Sequence[Experiment] | Mapping[str, Experiment]) -> dict[Cell, tuple[Cell, ...]]:
    """Every cell of ``experiments`` and the cells it needs, in Table 1 order (seeds, then methods)."""
    deps: dict[Cell, tuple[Cell, ...]] = {}
    for name, exp in as_experiments(experiments).items():
        features = Cell(name, "features")
        deps[features] = ()
        for seed in exp.seeds:
            base = Cell(name, "base_model", seed)
            deps[base] = (features,)
            for method in exp.methods:
                # a needed method in the run trains once, in its own cell; one not in the run is
                # trained by this cell itself (lvwlib.experiment.stages.fit_method)
                needs = [Cell(name, "method", seed, n) for n in registry.get(method).needs if n in exp.methods]
                deps[Cell(name, "method", seed, method)] = (base, *needs)
    return deps


def in_order(deps: Mapping[Cell, tuple[Cell, ...]]) -> list[Cell]:
    """The cells with every cell after those it needs, otherwise in plan order."""
    done: set[Cell] = set()
    order: list[Cell] = []
    pending = list(deps)
    while pending:
        cell = next((c for c in pending if all(d in done for d in deps[c])), None)
        if cell is None:
            raise ValueError(f"cells that need each other: {', '.join(c.name for c in pending)}")
        pending.remove(cell)
        done.add(cell)
        order.append(cell)
    return order


def execute(cell: Cell, exp: Experiment, progress: bool = False, memo: dict[str, Any] | None = None
            ) -> CellOutcome:
    """Run one cell in this process; raises on failure.

    ``memo`` (inline runs) keeps the prepared data and the last base model between
    cells; without it every cell loads the earlier stages from the cache.
    """
    start = time.perf_counter()
    memo = memo if memo is not None else {}
    if memo.get("prep_of") != cell.experiment:
        memo.update(prep_of=cell.experiment, prep=prepare(exp, progress=progress), base_of=None)
    prep = memo["prep"]
    if cell.stage == "features":
        summary = {"train images": float(len(prep.train_labels)), "test images": float(len(prep.test_labels))}
        return CellOutcome(time.perf_counter() - start, summary)
    if cell.stage not in ("base_model", "method"):
        raise ValueError(f"unknown cell stage {cell.stage!r}")
    if memo.get("base_of") != (cell.experiment, cell.seed):
        memo.update(base_of=(cell.experiment, cell.seed), base=base_for_seed(prep, cell.seed, progress=progress))
    base = memo["base"]
    if cell.stage == "base_model":
        summary = {"train_acc": float(base.history[-1]["train_acc"])} if base.history and \
            "train_acc" in base.history[-1] else {}
        return CellOutcome(time.perf_counter() - start, summary)
    result = run_method(prep, base, cell.method, cell.seed, progress=progress)
    summary = {"accuracy": float(result["accuracy"]), "iou": float(result["iou"])} if result is not None else {}
    return CellOutcome(time.perf_counter() - start, summary, result=result)


def run_cell(cell: Cell, exp: Experiment, threads: int | None, memo: dict[str, Any] | None = None) -> CellOutcome:
    """Run one cell in this process (a pool worker, a submitit or torchrun job, inline); never raises.

    ``threads``: torch threads of this process (None: leave them).
    """
    start = time.perf_counter()
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        return execute(cell, exp, memo=memo)
    except Exception:
        return CellOutcome(time.perf_counter() - start, error=traceback.format_exc())


def run_all(exp: Experiment, progress: bool = True) -> list[dict[str, Any]]:
    """Every method of ``exp.methods`` for every seed, in this process: the plan run inline.

    Returns the result rows for Table 1 (rank 0's only under torchrun); an error is raised as is.
    """
    memo: dict[str, Any] = {}
    rows = []
    for cell in in_order(plan({exp.dataset: exp})):
        outcome = execute(cell, exp, progress=progress, memo=memo)
        if outcome.result is not None:
            rows.append(outcome.result)
    return rows


# --------------------------------------------------------------------------- executors


class _Engine:
    """Submit cells, wait for some to finish; one subclass per executor."""

    def submit(self, cell: Cell, exp: Experiment, threads: int) -> Any:
        raise NotImplementedError

    def wait(self, handles: Sequence[Any]) -> list[Any]:
        """Block until at least one handle is done; return the done ones."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class _Finished:
    """A handle of a cell that ran at submission (inline)."""

    def __init__(self, outcome: CellOutcome) -> None:
        self.outcome = outcome

    def result(self) -> CellOutcome:
        return self.outcome


class _InlineEngine(_Engine):
    def __init__(self) -> None:
        self.memo: dict[str, Any] = {}  # the cells of one run share the prepared data

    def submit(self, cell: Cell, exp: Experiment, threads: int) -> _Finished:
        return _Finished(run_cell(cell, exp, None, self.memo))  # this process keeps its thread count

    def wait(self, handles: Sequence[Any]) -> list[Any]:
        return list(handles)


class _LocalEngine(_Engine):
    def __init__(self, workers: int) -> None:
        # spawn: a fresh interpreter per worker (fork after torch has started threads can hang)
        self.pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                           initializer=exit_with_parent, initargs=(os.getpid(),))

    def submit(self, cell: Cell, exp: Experiment, threads: int) -> cf.Future:
        return self.pool.submit(run_cell, cell, exp, threads)

    def wait(self, handles: Sequence[Any]) -> list[Any]:
        done, _ = cf.wait(handles, return_when=cf.FIRST_COMPLETED)
        return list(done)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _wait_polling(handles: Sequence[Any], poll_s: float) -> list[Any]:
    while True:
        done = [h for h in handles if h.done()]
        if done:
            return done
        time.sleep(poll_s)


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

    def submit(self, cell: Cell, exp: Experiment, threads: int) -> Any:
        return self.executor.submit(run_cell, cell, exp, threads)

    def wait(self, handles: Sequence[Any]) -> list[Any]:
        return _wait_polling(handles, self.poll_s)


class _TorchrunJob:
    """A cell running as ``torchrun ... -m lvwlib launch --cell <job>.pkl``; rank 0 writes <job>.out.pkl."""

    def __init__(self, job: Path, process: subprocess.Popen, log: Path) -> None:
        self.job, self.process, self.log = job, process, log

    def done(self) -> bool:
        return self.process.poll() is not None

    def result(self) -> CellOutcome:
        out = self.job.with_suffix(".out.pkl")
        if self.process.wait() != 0 or not out.exists():
            tail = self.log.read_text()[-4000:] if self.log.exists() else ""
            raise RuntimeError(f"torchrun exited with status {self.process.returncode}; log {self.log}:\n{tail}")
        with out.open("rb") as fh:
            return pickle.load(fh)


class _TorchrunEngine(_Engine):
    def __init__(self, cfg: CellsConfig) -> None:
        self.folder = resolve(cfg.folder)
        self.nproc, self.poll_s = cfg.nproc_per_node, cfg.poll_s
        self.count = 0

    def processes(self, cell: Cell) -> int:
        """N for a cell that trains under DDP (its method streams), else 1 (features: rank 0 computes them)."""
        if cell.stage == "base_model" or (cell.stage == "method" and registry.get(cell.method).streams):
            return self.nproc
        return 1

    def submit(self, cell: Cell, exp: Experiment, threads: int) -> _TorchrunJob:
        self.count += 1
        job = self.folder / f"cell-{os.getpid()}-{self.count}.pkl"
        save_with(job, lambda tmp: tmp.write_bytes(pickle.dumps((cell, exp, threads))))
        log = job.with_suffix(".log")
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
               str(self.processes(cell)), "-m", "lvwlib", "launch", "--cell", str(job)]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        with log.open("w") as fh:
            process = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
        return _TorchrunJob(job, process, log)

    def wait(self, handles: Sequence[Any]) -> list[Any]:
        return _wait_polling(handles, self.poll_s)


def _engine(cfg: CellsConfig) -> _Engine:
    if cfg.executor == "inline":
        return _InlineEngine()
    if cfg.executor == "local":
        return _LocalEngine(cfg.max_workers)
    if cfg.executor == "torchrun":
        return _TorchrunEngine(cfg)
    return _SubmititEngine(cfg)


def _describe(summary: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) and v % 1 else f"{k} {v:g}" for k, v in summary.items())


# Estimated seconds of a cell per 1,000 training images on one core (the median Table 1 cells of
# a cold run on a 2-core machine, issue 17: LVW 140 s, ProtoPNet 115 s, ProtoTree 105 s; the
# others scaled from the trainer benchmark, benchmarks/trainer_benchmark.py). Only the order in
# which cells are submitted depends on them, never a result; an unknown method costs DEFAULT_COST.
CELL_COST = {
    "features": 60.0, "base_model": 40.0, "base": 10.0, "protopnet": 115.0, "protopshare": 60.0,
    "prototree": 105.0, "srae": 30.0, "lvw_noalign": 120.0, "lvw": 140.0,
}
DEFAULT_COST = 100.0


def cell_cost(cell: Cell, images: int) -> float:
    """Estimated seconds of ``cell`` on an experiment of ``images`` training images (> 0)."""
    per_thousand = CELL_COST.get(cell.method if cell.stage == "method" else cell.stage, DEFAULT_COST)
    return max(per_thousand * images / 1000.0, 1e-6)


def training_images(exp: Experiment) -> int:
    """The number of training images of ``exp`` (listing its data); 1,000 when it cannot be listed
    (the cell that needs the data then reports why)."""
    try:
        return len(load_dataset(exp.run.data).train)
    except Exception:  # noqa: BLE001 - only an estimate; the features cell raises the real error
        return 1000


def schedule(deps: Mapping[Cell, tuple[Cell, ...]], images: Mapping[str, int]) -> list[Cell]:
    """The cells in submission order: the longest chain of work first, datasets interleaved.

    A cell's priority is its estimated cost plus the longest chain of cells that wait for it
    (its critical path: a features cell carries everything of its dataset, ProtoPNet carries
    ProtoPShare), so the workers start the long chains early and finish together. Every cell
    outranks the cells that need it (costs are > 0), so the order respects the plan's needs.
    Ties (cells of equally large datasets) alternate between experiments.

    Args:
        deps: :func:`plan`'s cells and what each needs.
        images: training images of each experiment by name (missing: 1,000).
    """
    cost = {c: cell_cost(c, images.get(c.experiment, 1000)) for c in deps}
    waiting: dict[Cell, list[Cell]] = {c: [] for c in deps}
    for cell, needs in deps.items():
        for need in needs:
            waiting[need].append(cell)
    chain: dict[Cell, float] = {}
    for cell in reversed(in_order(deps)):  # every cell after those it needs: dependants first here
        chain[cell] = cost[cell] + max((chain[w] for w in waiting[cell]), default=0.0)
    names = list(dict.fromkeys(c.experiment for c in deps))
    position: dict[Cell, int] = {}
    for name in names:
        mine = sorted((c for c in deps if c.experiment == name), key=lambda c: -chain[c])  # stable: plan order
        position.update({c: i for i, c in enumerate(mine)})
    return sorted(deps, key=lambda c: (-chain[c], position[c], names.index(c.experiment)))


def run_cells(
    experiments: Experiment | Sequence[Experiment] | Mapping[str, Experiment],
    cfg: CellsConfig | None = None,
    out: TextIO | None = None,
    engine: Callable[[CellsConfig], _Engine] = _engine,
    use_cache: bool = True,
) -> RunReport:
    """Run every cell of ``experiments`` with ``cfg``'s executor; one progress line per cell to ``out``.

    ``cfg``: the executor and its settings (default: a local process pool, one thread per cell).
    ``use_cache``: answer the cells whose artefacts are all cached in this process
    (:mod:`lvwlib.experiment.cached_cells`; "cached" in their progress line) instead of running them.
    Returns the report (it does not raise on failed cells: see :attr:`RunReport.ok`).
    """
    cfg = cfg if cfg is not None else CellsConfig()
    out = out or sys.stdout
    named = as_experiments(experiments)

    def log(line: str) -> None:
        print(line, file=out, flush=True)

    deps = plan(named)
    total, workers = len(deps), cfg.max_workers
    # not yet submitted: longest chains first, datasets interleaved (a ready cell is submitted
    # before a waiting one of higher priority)
    pending = schedule(deps, {name: training_images(exp) for name, exp in named.items()})
    running: dict[Any, Cell] = {}
    outcomes: dict[Cell, CellOutcome | None] = {}
    start = time.perf_counter()
    log(f"{total} cells of {', '.join(named)} on {cfg.executor}: {workers} workers x {cfg.threads} threads")

    def finish(cell: Cell, outcome: CellOutcome | None, line: str) -> None:
        outcomes[cell] = outcome
        log(f"[{len(outcomes)}/{total}] {cell.name}: {line}, {total - len(outcomes)} cells left")

    # The engine (a process pool, submitit) starts at the first cell the cache cannot answer: a warm
    # run starts no worker at all.
    eng: _Engine | None = None
    lookups = {name: CachedCells(exp) for name, exp in named.items()} if use_cache else {}
    looked_up: set[Cell] = set()  # each cell is looked up once, when its needs are done
    try:
        while pending or running:
            # skip cells whose needs failed; answer cached cells here; submit those whose needs all succeeded
            for cell in list(pending):
                broken = [d for d in deps[cell] if d in outcomes and (outcomes[d] is None or outcomes[d].error)]
                if broken:
                    pending.remove(cell)
                    finish(cell, None, f"skipped (needs {broken[0].name}, which failed)")
                    continue
                if not all(d in outcomes for d in deps[cell]):
                    continue
                if cell not in looked_up:  # once, when its needs are done: the cache cannot fill by itself
                    looked_up.add(cell)
                    hit = _cached_outcome(cell, lookups)
                    if hit is not None:
                        pending.remove(cell)
                        described = _describe(hit.summary)
                        finish(cell, hit, "cached" + (f" ({described})" if described else ""))
                        continue
                if len(running) < workers:
                    pending.remove(cell)
                    try:
                        eng = eng if eng is not None else engine(cfg)
                        running[eng.submit(cell, named[cell.experiment], cfg.threads)] = cell
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
        if eng is not None:
            eng.close()
    report = RunReport({cell: outcomes[cell] for cell in deps}, time.perf_counter() - start)  # plan order
    status = "ok" if report.ok else f"{len(report.failed)} cells failed or skipped"
    log(f"{total} cells in {report.wall_s:.1f} s wall: {status}")
    return report


def _cached_outcome(cell: Cell, lookups: Mapping[str, CachedCells]) -> CellOutcome | None:
    """The outcome of ``cell`` read from the cache, or None when it has to run (or the check failed)."""
    lookup = lookups.get(cell.experiment)
    if lookup is None:
        return None
    start = time.perf_counter()
    result = None
    try:
        if cell.stage == "features":
            summary = lookup.features()
        elif cell.stage == "base_model":
            summary = lookup.base_model(cell.seed)
        else:
            result = lookup.method(cell.method, cell.seed)
            summary = None if result is None else {"accuracy": float(result["accuracy"]), "iou": float(result["iou"])}
    except Exception:  # noqa: BLE001  (a lookup never fails a run: the cell runs and reports it)
        return None
    return None if summary is None else CellOutcome(time.perf_counter() - start, summary, result=result)


# --------------------------------------------------------------------------- command line


def cells_config(params: dict[str, Any], **overrides: Any) -> CellsConfig:
    """The params' ``cells:`` section with the non-None ``overrides`` (command-line flags) on top."""
    cfg = from_dict(CellsConfig, params.get("cells"))
    return dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})


def add_executor_flags(parser: argparse.ArgumentParser) -> None:
    """The executor's flags (they override the params' ``cells:`` section); see :func:`executor_config`."""
    group = parser.add_argument_group("executor (overrides the params' cells: section)")
    group.add_argument("--executor", choices=EXECUTORS)
    group.add_argument("--workers", type=int, help="cells at once (0: cores // threads)")
    group.add_argument("--threads", type=int, help="torch threads per cell")
    group.add_argument("--folder", help="submitit / torchrun job folder")
    group.add_argument("--partition", help="Slurm partition")
    group.add_argument("--timeout-min", type=int, help="time limit of one cell (submitit / Slurm)")
    group.add_argument("--gpus-per-node", type=int, help="Slurm GPUs per cell")
    group.add_argument("--cpus-per-task", type=int, help="Slurm CPUs per cell (0: threads)")
    group.add_argument("--mem-gb", type=float, help="Slurm memory per cell")
    group.add_argument("--nproc-per-node", type=int, help="torchrun processes of a cell that trains under DDP")


def executor_config(params: dict[str, Any], args: argparse.Namespace) -> CellsConfig:
    """:func:`cells_config` with the flags of :func:`add_executor_flags`."""
    return cells_config(
        params, executor=args.executor, workers=args.workers, threads=args.threads, folder=args.folder,
        partition=args.partition, timeout_min=args.timeout_min, gpus_per_node=args.gpus_per_node,
        cpus_per_task=args.cpus_per_task, mem_gb=args.mem_gb, nproc_per_node=args.nproc_per_node,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lvwlib run", description="Run the Table 1 cells (inline, local processes, Slurm or torchrun)."
    )
    parser.add_argument("--params", default="params/default.yaml", help="params yaml (its cells: section is read)")
    parser.add_argument("--datasets", nargs="+", help="datasets to run (default: the params' data.name)")
    parser.add_argument("--seeds", nargs="+", type=int, help="override the params' seeds")
    parser.add_argument("--methods", nargs="+", help="override the params' methods (Table 1 rows)")
    add_executor_flags(parser)
    args = parser.parse_args(argv)
    params = load_params(resolve(args.params))
    if args.seeds:
        params["seeds"] = args.seeds
    if args.methods:
        params["methods"] = args.methods
    cfg = executor_config(params, args)
    datasets = args.datasets or [experiment_from_params(params, source=args.params).dataset]
    experiments = {dataset: experiment_from_params(params, dataset, source=args.params) for dataset in datasets}
    if cfg.executor == "inline":
        torch.set_num_threads(cfg.threads)  # the cells run in this process
    return 0 if run_cells(experiments, cfg).ok else 1
