"""Benchmark (not a test): P processes x T threads per cell, on a few real Table 1 cells.

    nice -n 10 .venv/bin/python benchmarks/bench_cells.py [--dataset imagenette] \\
        [--layouts 2x1 1x2] [--seeds 0 1] [--methods lvw protopnet] [--max-per-class 30]

Trunk features and the base models are computed once (untimed) in a scratch
cache; each layout then runs the method cells from a copy of that warm cache,
so every layout trains the same cells from the same starting point. Prints the
wall time of each layout, the summed per-cell times, and the ratio of the
first layout's wall time to each other's. The numbers depend on the machine and
on what else runs on it (note the load average printed alongside).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from lvwlib.core.config import CellsConfig, load_params
from lvwlib.experiment.config import experiment_from_params
from lvwlib.experiment.runner import Cell, run_cells
from lvwlib.store.paths import resolve


def small_params(args: argparse.Namespace, cache_dir: Path) -> dict:
    """default.yaml made small: few images and epochs, the given seeds and methods."""
    params = load_params(resolve("params/default.yaml"))
    params["data"].update(max_per_class=args.max_per_class, max_test_per_class=args.max_test_per_class)
    params["base"].update(epochs=args.base_epochs)
    params["lvw"].update(warm_epochs=2, joint_epochs=args.joint_epochs, push_every=args.joint_epochs,
                         last_layer_epochs=5)
    params.update(seeds=list(args.seeds), cache_dir=str(cache_dir))
    return params


def time_layout(args: argparse.Namespace, warm: Path, cache: Path, layout: str) -> dict:
    """Run the method cells with ``layout`` (PROCESSESxTHREADS) from a copy of the warm cache."""
    workers, threads = (int(x) for x in layout.split("x"))
    shutil.copytree(warm, cache)
    params = {**small_params(args, cache), "methods": list(args.methods)}
    load = os.getloadavg()[0]
    log = io.StringIO()
    start = time.perf_counter()
    report = run_cells(experiment_from_params(params, args.dataset), CellsConfig(workers=workers, threads=threads),
                       out=log)
    wall = time.perf_counter() - start
    if not report.ok:
        raise SystemExit(f"{layout} failed:\n{log.getvalue()}")
    methods = {c.name: o.seconds for c, o in report.outcomes.items() if c.stage == "method" and o}
    return {
        "wall_s": round(wall, 1),
        "method_cells_s": {k: round(v, 1) for k, v in methods.items()},
        "sum_method_cells_s": round(sum(methods.values()), 1),
        "load_avg_1min_before": round(load, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="imagenette")
    parser.add_argument("--layouts", nargs="+", default=["2x1", "1x2"], help="PROCESSESxTHREADS")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--methods", nargs="+", default=["lvw", "protopnet"])
    parser.add_argument("--max-per-class", type=int, default=30)
    parser.add_argument("--max-test-per-class", type=int, default=10)
    parser.add_argument("--base-epochs", type=int, default=2)
    parser.add_argument("--joint-epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=1,
                        help="rounds; odd rounds run the layouts reversed (ABBA), to cancel drifting load")
    parser.add_argument("--warm", type=Path, help="keep the warm cache (features, base models) here for reruns")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_cells_") as tmp:
        warm = args.warm or Path(tmp) / "warm"
        # untimed: features and base models (+ Grad-CAM) of every seed, shared by all layouts
        log = io.StringIO()
        warm_exp = experiment_from_params({**small_params(args, warm), "methods": ["base"]}, args.dataset)
        report = run_cells(warm_exp, CellsConfig(workers=2, threads=1), out=log)
        if not report.ok:
            raise SystemExit(f"warm-up failed:\n{log.getvalue()}")
        out: dict = {"config": {**vars(args), "warm": str(args.warm)}, "runs": []}
        for round_ in range(args.repeats):
            for layout in (args.layouts if round_ % 2 == 0 else args.layouts[::-1]):
                out["runs"].append({"layout": layout, **time_layout(args, warm, Path(tmp) / f"{layout}-{round_}", layout)})
                print(json.dumps(out["runs"][-1]), flush=True)
        walls = {lay: [r["wall_s"] for r in out["runs"] if r["layout"] == lay] for lay in args.layouts}
        out["mean_wall_s"] = {lay: round(sum(w) / len(w), 1) for lay, w in walls.items()}
        first = args.layouts[0]
        for layout in args.layouts[1:]:
            out[f"wall {layout} / wall {first}"] = round(out["mean_wall_s"][layout] / out["mean_wall_s"][first], 3)
        out["cells"] = [Cell(args.dataset, "method", s, m).name for s in args.seeds for m in args.methods]
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
