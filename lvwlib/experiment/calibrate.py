"""Calibration of the defaults on the VALIDATION split (never the test set).

A calibration file (``params/calibration.yaml``) names variants: each a set of
overrides of a params file. For every (dataset, variant, seed) this trains (or
loads from the cache) the named methods through :mod:`lvwlib.experiment.pipeline` and
reads their validation accuracy and IoU, beside the base model's validation
accuracy. Test numbers are not looked at here; :func:`calibration_table`
does not even carry them.

    python -m lvwlib.experiment.calibrate --params params/default.yaml \\
        --variants params/calibration.yaml --datasets imagenette flowers17 --out results/calibration
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from lvwlib.core.config import load_params
from lvwlib.experiment.pipeline import (
    _deep_merge,
    base_for_seed,
    experiment_from_params,
    prepare,
    resolve,
    run_method,
)
from lvwlib.paper.tables import write_table
from lvwlib.store.records import RunRecord


def variant_params(params: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``params`` with a variant's overrides merged in (nested sections merge key by key)."""
    return _deep_merge(copy.deepcopy(params), overrides or {})


def calibrate(
    params: dict[str, Any],
    variants: dict[str, dict[str, Any]],
    datasets: list[str],
    seeds: list[int],
    methods: tuple[str, ...] = ("lvw",),
    progress: bool = False,
    log=print,
) -> pd.DataFrame:
    """One row per (dataset, variant, method, seed): validation accuracy and IoU, base val accuracy.

    Returns:
        columns dataset, variant, method, seed, val_accuracy, val_iou, base_val_accuracy, gap
        (val_accuracy - base_val_accuracy, in accuracy units), wall_s.
    """
    rows = []
    for dataset in datasets:
        for name, overrides in variants.items():
            exp = experiment_from_params(variant_params(params, overrides), dataset, source=f"variant {name}")
            prep = prepare(exp, progress=progress)
            if prep.val_feats is None:
                raise ValueError(f"{dataset}: calibration needs a validation split (data.val_fraction > 0)")
            for seed in seeds:
                base = base_for_seed(prep, seed, progress=progress)
                base_val = run_method(prep, base, "base", seed, progress=progress)["val"]["accuracy"]
                for method in methods:
                    start = time.perf_counter()
                    result = run_method(prep, base, method, seed, progress=progress)
                    wall = time.perf_counter() - start
                    row = {
                        "dataset": dataset, "variant": name, "method": method, "seed": seed,
                        "val_accuracy": result["val"]["accuracy"], "val_iou": result["val"]["iou"],
                        "base_val_accuracy": base_val,
                        "gap": result["val"]["accuracy"] - base_val, "wall_s": round(wall, 1),
                    }
                    rows.append(row)
                    log(
                        f"{dataset} {name} {method} seed {seed}: val acc {row['val_accuracy']:.3f} "
                        f"(base {base_val:.3f}, gap {100 * row['gap']:+.1f} pt), val IoU {row['val_iou']:.3f}, "
                        f"{wall:.0f} s"
                    )
    return pd.DataFrame(rows)


def prototree_curve(
    params: dict[str, Any], dataset: str, seed: int, epochs: int, eval_every: int = 10, progress: bool = False,
) -> pd.DataFrame:
    """Validation accuracy of ProtoTree against training epochs (one run, evaluated every N epochs).

    The accuracy is the soft tree's (all leaves, before pruning and projection), a
    proxy for where training stops improving; Table 1 reports the pruned, projected
    tree's greedy accuracy on test.
    Returns: columns epoch, loss, train_acc_soft, val_acc_soft.
    """
    import dataclasses

    import torch

    from lvwlib.experiment.pipeline import initial_tail
    from lvwlib.methods.prototree.tree import train_prototree

    exp = experiment_from_params(params, dataset)
    prep = prepare(exp, progress=progress)
    base = base_for_seed(prep, seed, progress=progress)
    val_feats, val_labels = prep.split("val")

    def val_accuracy(tree) -> dict[str, float]:
        correct = 0
        for start in range(0, len(val_labels), 128):
            x = val_feats[start : start + 128, 0].float()
            out, _ = tree.tree_output(tree.min_distances(x)[0])
            correct += (out.argmax(1) == val_labels[start : start + 128]).sum().item()
        return {"val_acc_soft": correct / len(val_labels)}

    torch.manual_seed(seed)
    cfg = dataclasses.replace(exp.prototree, epochs=epochs, seed=seed)
    tree = train_prototree(
        initial_tail(prep, base, exp.run.lvw.tail_init), prep.train_feats, prep.train_labels,
        prep.num_classes, cfg, progress=progress, evaluate=val_accuracy, eval_every=eval_every,
    )
    history = pd.DataFrame(tree.summary["history"])
    return history.dropna(subset=["val_acc_soft"]).assign(dataset=dataset, seed=seed)


def calibration_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds per (dataset, variant, method), plus the worst seed's gap."""
    grouped = rows.groupby(["dataset", "variant", "method"], sort=False)
    table = grouped[["val_accuracy", "val_iou", "base_val_accuracy", "gap"]].mean()
    table["worst_gap"] = grouped["gap"].min()
    table["seeds"] = grouped["seed"].count()
    return table.reset_index()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params/default.yaml")
    parser.add_argument("--variants", default="params/calibration.yaml")
    parser.add_argument("--datasets", nargs="+", default=["imagenette"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--methods", nargs="+", default=["lvw"])
    parser.add_argument("--only", nargs="*", default=None, help="run only these variants")
    parser.add_argument("--out", default="results/calibration")
    parser.add_argument(
        "--prototree-curve", type=int, default=0, metavar="EPOCHS",
        help="instead of the variants: ProtoTree's validation accuracy against epochs, up to EPOCHS",
    )
    args = parser.parse_args(argv)
    if args.prototree_curve:
        params = load_params(resolve(args.params))
        out = resolve(args.out)
        with RunRecord(out, vars(args), name="run_prototree_curve.json"):
            curve = pd.concat(
                [prototree_curve(params, d, s, args.prototree_curve) for d in args.datasets for s in args.seeds]
            )
            md = "# ProtoTree: validation accuracy (soft tree) against epochs\n\n" + curve.to_markdown(
                index=False, floatfmt=".3f") + "\n"
            write_table(curve, md, out / "prototree_curve")
        print(md)
        return 0

    params = load_params(resolve(args.params))
    spec = load_params(resolve(args.variants))
    variants = spec.get("variants", {})
    if args.only:
        unknown = sorted(set(args.only) - set(variants))
        if unknown:
            raise SystemExit(f"unknown variant(s) {unknown}; in {args.variants}: {', '.join(variants)}")
        variants = {k: v for k, v in variants.items() if k in args.only}
    out = resolve(args.out)
    config = {"params": args.params, "variants": variants, "datasets": args.datasets, "seeds": args.seeds}
    with RunRecord(out, config, name="run_calibration.json"):
        rows = calibrate(
            params, variants, args.datasets, args.seeds, tuple(args.methods),
            log=lambda s: print(s, flush=True),
        )
        table = calibration_table(rows)
        stem = out / ("calibration_" + "_".join(args.datasets))
        md = (
            "# Calibration on the validation split (mean over seeds; gap = LVW - base, accuracy)\n\n"
            + table.to_markdown(index=False, floatfmt=".3f") + "\n"
        )
        write_table(rows, md, Path(stem))
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
