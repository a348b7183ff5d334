"""The torchrun entry: the Table 1 plan in every process of a DDP job (or in one process).

One process::

    python -m lvwlib launch --params params/paper.yaml --dataset stl10 --out results/launch/stl10.json

Several (one process per GPU, PyTorch DDP; gloo on the CPU)::

    torchrun --nproc_per_node 4 -m lvwlib launch --params params/paper.yaml --dataset stl10 --out ...

Every process runs the cells of :func:`lvwlib.experiment.runner.plan` in order through
the same stages and cache keys as every other executor (:mod:`lvwlib.experiment.stages`):
the features (rank 0 computes them), the base model and its Grad-CAM maps, then each of
``--methods`` for every seed. The ranks train together; rank 0 writes the caches, stores
every trained model where :func:`lvwlib.experiment.models.load_model` finds it (a model
trained on GPUs opens in the explorer) and writes the json of result rows. Under
torchrun only the methods whose fit trains from batch sources run
(:attr:`lvwlib.methods.registry.Method.streams`: base, lvw, lvw_noalign, protopnet); so
do they when the images stream (``backbone.tail: all``, :mod:`lvwlib.core.streaming`),
a mode with its own cache keys. An interrupted run resumes from its per-epoch checkpoints.

``--cell JOB`` runs one pickled cell instead: the runner's ``torchrun`` executor
(:mod:`lvwlib.experiment.runner`) starts one such job per cell.
"""

from __future__ import annotations

import argparse
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from lvwlib.core import distributed as dist
from lvwlib.core.config import load_params
from lvwlib.core.devices import resolve_device
from lvwlib.experiment.config import experiment_from_params
from lvwlib.experiment.runner import run_all, run_cell
from lvwlib.store.paths import resolve
from lvwlib.store.records import save_with, write_json


def set_value(params: dict[str, Any], item: str) -> None:
    """Apply one ``--set KEY=VALUE`` (a dotted key, a yaml value) to ``params`` in place."""
    key, _, value = item.partition("=")
    target = params
    *parents, leaf = key.split(".")
    for part in parents:
        target = target.setdefault(part, {})
    target[leaf] = yaml.safe_load(value)


def run_job(job: Path) -> int:
    """Run the pickled (cell, experiment, threads) of the torchrun executor; rank 0 pickles the outcome."""
    with job.open("rb") as fh:
        cell, exp, threads = pickle.load(fh)
    dist.init_from_env(resolve_device(exp.run.device))
    try:
        outcome = run_cell(cell, exp, threads)
        if dist.is_main():
            save_with(job.with_suffix(".out.pkl"), lambda tmp: tmp.write_bytes(pickle.dumps(outcome)))
    finally:
        dist.shutdown()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lvwlib launch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", help="parameter yaml (params/*.yaml)")
    parser.add_argument("--dataset", default=None, help="dataset name (applies the params' per-dataset overrides)")
    parser.add_argument("--methods", nargs="+", default=["base,lvw"],
                        help="Table 1 rows (comma or space separated); under torchrun: methods that stream")
    parser.add_argument("--out", help="json file of result rows (written by rank 0)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a top-level or nested field, e.g. --set cache_dir=/tmp/c --set lvw.batch_size=8")
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--cell", type=Path, help="run one pickled cell (the runner's torchrun executor)")
    args = parser.parse_args(argv)
    if args.cell is not None:
        return run_job(args.cell)
    if not args.params or not args.out:
        parser.error("--params and --out are required (or --cell)")
    params = load_params(resolve(args.params))
    for item in args.set:
        set_value(params, item)
    params["methods"] = [m for group in args.methods for m in group.split(",") if m]
    exp = experiment_from_params(params, args.dataset, source=args.params)
    dist.init_from_env(resolve_device(exp.run.device))
    try:
        rows = run_all(exp, progress=args.progress)
        if dist.is_main():
            write_json(args.out, {"experiment": exp.to_dict(), "world_size": dist.world_size(), "rows": rows})
    finally:
        dist.shutdown()
    return 0
