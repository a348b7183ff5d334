"""Calibration of the defaults on the VALIDATION split (never the test set).

A calibration file (``params/calibration.yaml``) names variants: each a set of
overrides of a params file. Every (dataset, variant) is one experiment of the
runner's plan (:mod:`lvwlib.experiment.runner`): it trains (or loads from the
cache) the named methods and the base row for every seed, with any executor,
and this module reads their validation accuracy and IoU, beside the base model's
validation accuracy. Test numbers are not looked at here; :func:`calibration_table`
does not even carry them.

    python -m lvwlib calibrate --params params/default.yaml \\
        --variants params/calibration.yaml --datasets imagenette flowers17 --out results/calibration

Beside the validation numbers, every row carries the border diagnostic (issue 15) on the validation
split: the share of the words' push locations (``word_border``) and of the peaks of each validation
image's top-m maps (``peak_border``; the base row: its Grad-CAM's peak) on the border cells of the
grid, against a uniform location's share (``chance``, 24/49 on 7 x 7). So the trunk variants of
``params/calibration_trunk.yaml`` (``backbone.border``) can be chosen on accuracy, IoU and border share.

``--curve METHOD --curve-epochs N`` instead records a method's validation accuracy
against training epochs (methods with a :attr:`~lvwlib.methods.registry.Method.curve`:
ProtoTree; ProtoPShare against merge steps, N = steps), to choose its number of epochs.
With ``--only VARIANT ...`` the curve is recorded once per named variant of ``--variants``
(a ``variant`` column), e.g. ProtoPShare with and without joint epochs between merges.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
from pathlib import Path
from typing import Any

import pandas as pd

from lvwlib.core.border import cams_on_grid, location_shares
from lvwlib.core.config import CellsConfig, load_params
from lvwlib.experiment.config import deep_merge, experiment_from_params
from lvwlib.experiment.keys import method_settings
from lvwlib.experiment.models import explained_maps, load_model, push_cells
from lvwlib.experiment.runner import Cell, add_executor_flags, executor_config, run_cells
from lvwlib.experiment.stages import Prepared, base_for_seed, fit_context, fit_method, prepare
from lvwlib.methods import registry
from lvwlib.methods.registry import Needed
from lvwlib.store.paths import resolve
from lvwlib.store.records import RunRecord, write_table

BORDER_COLUMNS = ("word_border", "peak_border", "chance")  # the border diagnostic of each row (validation)


def variant_params(params: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``params`` with a variant's overrides merged in (nested sections merge key by key)."""
    return deep_merge(copy.deepcopy(params), overrides or {})


def calibrate(
    params: dict[str, Any],
    variants: dict[str, dict[str, Any]],
    datasets: list[str],
    seeds: list[int],
    methods: tuple[str, ...],
    cfg: CellsConfig | None = None,
    log=print,
) -> pd.DataFrame:
    """One row per (dataset, variant, method, seed): validation accuracy and IoU, base val accuracy,
    the border diagnostic; the base model's own row first for each (dataset, variant, seed).

    Returns:
        columns dataset, variant, method, seed, val_accuracy, val_iou, base_val_accuracy, gap
        (val_accuracy - base_val_accuracy, in accuracy units), wall_s, word_border, peak_border,
        chance (:func:`validation_border`).
    ``cfg``: how the runner runs the cells (default: inline, in this process).

    Raises:
        RuntimeError: a cell failed (the runner printed its traceback).
    """
    cfg = cfg if cfg is not None else CellsConfig(executor="inline")
    base = registry.reference()  # the base model's row: every method's gap is to its accuracy
    experiments, names = {}, {}
    for dataset in datasets:
        for variant, overrides in variants.items():
            values = {**variant_params(params, overrides), "seeds": list(seeds),
                      "methods": list(dict.fromkeys([base, *methods]))}
            exp = experiment_from_params(values, dataset, source=f"variant {variant}")
            if exp.run.data.val_fraction <= 0:
                raise ValueError(f"{dataset}: calibration needs a validation split (data.val_fraction > 0)")
            name = f"{dataset}/{variant}"
            experiments[name], names[name] = exp, (dataset, variant)
    report = run_cells(experiments, cfg, out=_Lines(log))
    if not report.ok:
        raise RuntimeError(f"calibration: {len(report.failed)} cells failed or were skipped "
                           f"({', '.join(c.name for c in report.failed)})")
    outcomes = report.outcomes
    rows = []
    for name, (dataset, variant) in names.items():
        prep = prepare(experiments[name], progress=False)  # the cached features the cells used
        for seed in seeds:
            base_val = outcomes[Cell(name, "method", seed, base)].result["val"]["accuracy"]
            borders = validation_border(prep, seed, [m for m in methods if m != base])
            for method in dict.fromkeys([base, *methods]):
                outcome = outcomes[Cell(name, "method", seed, method)]
                val = outcome.result["val"]
                row = {
                    "dataset": dataset, "variant": variant, "method": method, "seed": seed,
                    "val_accuracy": val["accuracy"], "val_iou": val["iou"], "base_val_accuracy": base_val,
                    "gap": val["accuracy"] - base_val, "wall_s": round(outcome.seconds, 1), **borders[method],
                    # a method's own validation measures beside Table 1's (ProtoTree: the accuracy of each
                    # inference strategy, their fidelity to the soft tree, near-uniform leaves)
                    **{f"val_{k}": v for k, v in outcome.result.get("strategies", {}).get("val", {}).items()
                       if k != "images"},
                }
                rows.append(row)
                log(
                    f"{dataset} {variant} {method} seed {seed}: val acc {row['val_accuracy']:.3f} "
                    f"(base {base_val:.3f}, gap {100 * row['gap']:+.1f} pt), val IoU {row['val_iou']:.3f}, "
                    f"peaks on the border {row['peak_border']:.2f} (chance {row['chance']:.2f})"
                )
    return pd.DataFrame(rows)


def validation_border(prep: Prepared, seed: int, methods: list[str]) -> dict[str, dict[str, float]]:
    """The border diagnostic (:func:`lvwlib.core.border.location_shares`) of the base model and of each
    trained ``method`` of ``seed`` on the VALIDATION split, as notebook 11 measures it on the test set.

    The models come from the cache (the calibration's cells trained them). A method's peaks are those
    of the top-m maps each validation image is explained with; the base row's is its Grad-CAM's peak on
    the methods' grid (average-pooled, :func:`lvwlib.core.border.cams_on_grid`).

    Returns:
        method -> {word_border, peak_border, chance}, the base model under its registry name.
    """
    if prep.val_feats is None:
        raise ValueError("the border diagnostic of a calibration needs a validation split")
    m, dataset = prep.exp.run.eval.top_m, prep.exp.run.data.name
    out, grid = {}, None
    for method in methods:
        model = load_model(prep.exp, dataset, method, seed, prep=prep)
        maps = explained_maps(model, prep.val_feats, m)  # [Nv, m', h, w]
        out[method] = location_shares(maps, *push_cells(model.words.push if model.words is not None else None))
        grid = maps.shape[-2:]
    base = base_for_seed(prep, seed, progress=False)
    cams = base.cams("val")[:, 0].float()  # [Nv, hc, wc], the image (not its flip)
    h, w = grid if grid is not None else prep.val_feats.shape[-2:]
    out[registry.reference()] = location_shares(cams_on_grid(cams, h, w))
    return out


class _Lines:
    """A text stream that hands each line to ``log`` (the runner's progress lines)."""

    def __init__(self, log) -> None:
        self.log, self.buffer = log, ""

    def write(self, text: str) -> int:
        self.buffer += text
        *lines, self.buffer = self.buffer.split("\n")
        for line in lines:
            self.log(line)
        return len(text)

    def flush(self) -> None:
        pass


def training_curve(
    params: dict[str, Any], dataset: str, method: str, seed: int, epochs: int, eval_every: int = 10,
    progress: bool = False,
) -> pd.DataFrame:
    """Validation accuracy of ``method`` against training epochs (one run, evaluated every ``eval_every``).

    The methods it needs (ProtoPShare: its ProtoPNet) are trained first, or loaded from their checkpoints.

    Returns: the method's curve rows (e.g. epoch, loss, train_acc_soft, val_acc_soft), with dataset and seed.
    """
    spec = registry.get(method)
    if spec.curve is None:
        able = [n for n in registry.names() if registry.get(n).curve is not None]
        raise ValueError(f"{spec.label} records no training curve; methods that do: {', '.join(able)}")
    exp = experiment_from_params(params, dataset)
    prep = prepare(exp, progress=progress)
    base = base_for_seed(prep, seed, progress=progress)
    needed = {n: Needed(fit_method(prep, base, n, seed, progress), method_settings(prep.exp, n, seed))
              for n in spec.needs}
    rows = spec.curve(fit_context(prep, base, method, seed, progress, needed), epochs, eval_every)
    return pd.DataFrame(rows).assign(dataset=dataset, seed=seed)


def calibration_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds per (dataset, variant, method), plus the worst seed's gap (border shares too)."""
    grouped = rows.groupby(["dataset", "variant", "method"], sort=False)
    columns = ["val_accuracy", "val_iou", "base_val_accuracy", "gap"]
    columns += [c for c in BORDER_COLUMNS if c in rows]  # rows recorded before the border diagnostic lack them
    columns += [c for c in rows.columns if c.startswith("val_") and c not in ("val_accuracy", "val_iou")]
    table = grouped[columns].mean()
    table["worst_gap"] = grouped["gap"].min()
    table["seeds"] = grouped["seed"].count()
    return table.reset_index()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lvwlib calibrate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params/default.yaml")
    parser.add_argument("--variants", default="params/calibration.yaml")
    parser.add_argument("--datasets", nargs="+", default=["imagenette"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--methods", nargs="+", help="methods to calibrate (default: the variants file's methods)")
    parser.add_argument("--only", nargs="*", default=None, help="run only these variants")
    parser.add_argument("--out", default="results/calibration")
    parser.add_argument("--curve", metavar="METHOD",
                        help="instead of the variants: METHOD's validation accuracy against epochs "
                             "(ProtoPShare: merge steps); with --only, one curve per named variant")
    parser.add_argument("--curve-epochs", type=int, default=200,
                        help="epochs of the --curve run (ProtoPShare: merge steps, e.g. 8)")
    add_executor_flags(parser)
    args = parser.parse_args(argv)
    params = load_params(resolve(args.params))
    out = resolve(args.out)
    if args.curve:
        # --only: one curve per named variant of the variants file; otherwise the params as they are
        runs = {None: params}
        if args.only:
            variants = load_params(resolve(args.variants)).get("variants", {})
            unknown = sorted(set(args.only) - set(variants))
            if unknown:
                raise SystemExit(f"unknown variant(s) {unknown}; in {args.variants}: {', '.join(variants)}")
            runs = {v: variant_params(params, variants[v]) for v in args.only}
        with RunRecord(out, vars(args), name=f"run_{args.curve}_curve.json"):
            curve = pd.concat([
                training_curve(values, d, args.curve, s, args.curve_epochs).assign(
                    **({"variant": v} if v is not None else {}))
                for v, values in runs.items() for d in args.datasets for s in args.seeds
            ])
            axis = "merge steps" if "step" in curve.columns else "epochs"
            md = (f"# {registry.label(args.curve)}: validation accuracy against {axis}\n\n"
                  + curve.to_markdown(index=False, floatfmt=".3f") + "\n")
            write_table(curve, md, out / f"{args.curve}_curve")
        print(md)
        return 0

    spec = load_params(resolve(args.variants))
    variants = spec.get("variants", {})
    methods = args.methods or spec.get("methods")
    if not methods:
        raise SystemExit(f"no methods to calibrate: give --methods or a methods: list in {args.variants}")
    if args.only:
        unknown = sorted(set(args.only) - set(variants))
        if unknown:
            raise SystemExit(f"unknown variant(s) {unknown}; in {args.variants}: {', '.join(variants)}")
        variants = {k: v for k, v in variants.items() if k in args.only}
    cfg = executor_config(params, args)
    if args.executor is None:
        cfg = dataclasses.replace(cfg, executor="inline")  # the calibration's default: this process
    config = {"params": args.params, "variants": variants, "datasets": args.datasets, "seeds": args.seeds,
              "methods": methods}
    with RunRecord(out, config, name="run_calibration.json"):
        rows = calibrate(params, variants, args.datasets, args.seeds, tuple(methods), cfg,
                         log=lambda s: print(s, flush=True))
        table = calibration_table(rows)
        stem = out / ("calibration_" + "_".join(args.datasets))
        md = (
            "# Calibration on the validation split (mean over seeds; gap = method - base, accuracy)\n\n"
            + table.to_markdown(index=False, floatfmt=".3f") + "\n"
        )
        write_table(rows, md, Path(stem))
    print(md)
    return 0
