"""Train (or load) every method of a params file on some datasets, timing each stage.

``python -m lvwlib.experiment.train_all params/quick.yaml imagenette`` trains in this process (the
explorer notebook calls it when the cache is empty); ``make quick`` runs the same cells in
parallel processes with :mod:`lvwlib.experiment.cells`. Afterwards the explorer and the classroom find
every model in the cache.
"""

from __future__ import annotations

import argparse
import time

from lvwlib.core.config import load_params
from lvwlib.experiment.pipeline import (
    base_for_seed,
    experiment_from_params,
    prepare,
    resolve,
    run_method,
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("params", help="params yaml, e.g. params/quick.yaml")
    parser.add_argument("datasets", nargs="+", help="dataset names, e.g. imagenette")
    parser.add_argument("--progress", action="store_true", help="show tqdm bars")
    args = parser.parse_args(argv)
    params = load_params(resolve(args.params))
    start = time.perf_counter()

    def stamp(what: str, t0: float) -> float:
        now = time.perf_counter()
        print(f"{what:<40s} {now - t0:7.1f} s   (total {now - start:7.1f} s)", flush=True)
        return now

    for dataset in args.datasets:
        exp = experiment_from_params(params, dataset)
        t = time.perf_counter()
        prep = prepare(exp, progress=args.progress)
        t = stamp(f"{dataset}: data + trunk features", t)
        for seed in exp.seeds:
            base = base_for_seed(prep, seed, progress=args.progress)
            t = stamp(f"{dataset} seed {seed}: base + Grad-CAM", t)
            for method in exp.methods:
                row = run_method(prep, base, method, seed, progress=args.progress)
                t = stamp(f"{dataset} seed {seed}: {method} (acc {row['accuracy']:.2f}, IoU {row['iou']:.2f})", t)


if __name__ == "__main__":
    main()
