"""Table 1 and what notebook 03 writes beside it: the random-map (chance) rows, SRAE's table, ProtoTree's table,
IoU against q for both IoU variants (Figure 3(b-f)) and the paper-vs-reference IoU table.

Every dataset is named in the tables by :func:`lvwlib.experiment.names.results_name`
(a registry name as is; a user's folder as ``<base name>-<hash>``), so all of a
dataset's rows, the random map's included, sit under one heading.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from lvwlib.experiment.config import experiment_from_params
from lvwlib.experiment.names import results_name
from lvwlib.experiment.runner import run_all
from lvwlib.experiment.stages import base_for_seed, prepare
from lvwlib.methods import labels
from lvwlib.paper.analyses import random_map_sweep
from lvwlib.paper.figures import PLOT_DPI, plot_iou_sweep
from lvwlib.paper.tables import long_rows, mean_sd_cells, summarise, table1_columns, table1_markdown
from lvwlib.paper.viz import save_figure
from lvwlib.store.records import write_table

Rows = dict[str, list[dict[str, Any]]]  # results name of a dataset -> one result dict per (method, seed)
VARIANT_KEYS = {"paper": "iou_q{}", "reference": "iou_reference_q{}"}  # result keys of the IoU at each q


def run_rows(params: dict[str, Any], datasets: list[str], progress: bool = True) -> Rows:
    """Every method x seed of each dataset (trained or read from the cache), keyed by results name."""
    return {results_name(d): run_all(experiment_from_params(params, d), progress=progress) for d in datasets}


def random_map_rows(exp: Any, progress: bool = False) -> pd.DataFrame:
    """The "Random map" rows of Table 1 and Figure 3(b-f): for every seed, the mean IoU of
    uniform-noise maps against that seed's base Grad-CAM on the test set, at every swept q,
    for both IoU variants. Columns: dataset (its results name), method, seed, q, variant, iou.
    """
    prep = prepare(exp, progress)
    ev = exp.run.eval
    qs = sorted({*ev.quantiles, ev.quantile})
    rows = []
    for seed in exp.seeds:
        cams = base_for_seed(prep, seed, progress).test_cams[:, 0]
        sweep = random_map_sweep(cams, qs, ev.eval_size, seed=seed)
        rows += [{"dataset": results_name(exp.run.data.name), "method": "Random map", "seed": seed, "q": q,
                  "variant": variant, "iou": sweep[(variant, q)].mean().item()}
                 for q in qs for variant in ("paper", "reference")]
    return pd.DataFrame(rows)


def chance_rows(params: dict[str, Any], datasets: list[str], progress: bool = True) -> pd.DataFrame:
    """:func:`random_map_rows` of every dataset, in one long table."""
    return pd.concat([random_map_rows(experiment_from_params(params, d), progress) for d in datasets],
                     ignore_index=True)


def write_random_map(chance: pd.DataFrame, out_dir: Path) -> None:
    """``random_map.csv`` (every seed) and ``random_map.md`` (mean and sd per dataset, variant, q)."""
    summary = chance.groupby(["dataset", "variant", "q"])["iou"].agg(["mean", "std"])
    write_table(chance, summary.to_markdown(floatfmt=".4f"), out_dir / "random_map")


def table1_long(params: dict[str, Any], datasets: list[str], rows: Rows, chance: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, method, seed): accuracy and IoU at each dataset's q (``eval.quantile``),
    the random map's rows included (without accuracy: a noise map predicts nothing)."""
    quantiles = {results_name(d): experiment_from_params(params, d).run.eval.quantile for d in datasets}
    random = pd.concat([
        chance[(chance["dataset"] == d) & (chance["q"] == q) & (chance["variant"] == "paper")]
        for d, q in quantiles.items()
    ]).assign(accuracy=float("nan"))
    return pd.concat([*(long_rows(d, r, labels()) for d, r in rows.items()),
                      random[["dataset", "method", "seed", "accuracy", "iou"]]], ignore_index=True)


def write_table1(long: pd.DataFrame, out_dir: Path) -> str:
    """``table1.csv`` (long) and ``table1.md`` (mean ± std over seeds); the markdown."""
    md = ("# Table 1 (the paper's columns in its order; ours: mean ± std over seeds; IoU at q = 50)\n\n"
          + table1_markdown(summarise(long)))
    write_table(long, md, out_dir / "table1")
    return md


def srae_rows(rows: Rows) -> pd.DataFrame:
    """SRAE's IoU, faithfulness and orthogonality per (dataset, seed); empty without SRAE rows."""
    return pd.DataFrame([
        {"dataset": d, "seed": r["seed"], "iou": r["iou"],
         **{k: v for k, v in {**r["faithfulness"], **r["orthogonality"]}.items() if isinstance(v, (int, float))}}
        for d, results in rows.items() for r in results if r["method"] == "srae"
    ])


def write_srae_table(srae: pd.DataFrame, out_dir: Path) -> pd.DataFrame:
    """``srae_table.csv`` / ``.md``: each measure's mean and std over seeds per dataset (the summary)."""
    numeric = [c for c in srae.columns if c not in ("dataset", "seed")]
    summary = srae.groupby("dataset")[numeric].agg(["mean", "std"])
    summary.columns = [f"{a} {b}" for a, b in summary.columns]
    write_table(srae, "# SRAE faithfulness and orthogonality (mean and std over seeds)\n\n"
                + summary.to_markdown(floatfmt=".4f") + "\n", out_dir / "srae_table")
    return summary


# ProtoTree's table: the official evaluation of its pruned, projected tree on test
# (lvwlib.methods.prototree.tree.evaluate_strategies) and the size of the tree before and after pruning.
PROTOTREE_MEASURES = ("acc_soft", "acc_sample_max", "acc_greedy", "fidelity_sample_max", "fidelity_greedy",
                      "near_uniform_greedy", "near_uniform_sample_max", "mean_greedy_path_length")
PROTOTREE_SIZES = ("prototypes_before", "prototypes_after", "leaves_before", "leaves_after")


def prototree_rows(rows: Rows) -> pd.DataFrame:
    """ProtoTree's soft, sample_max and greedy test accuracy, their fidelity to the soft tree, the share
    of test images ending in a near-uniform leaf (max class prob < 2 / C) and the leaves before and after
    pruning, per (dataset, seed); which one is Table 1's (``headline``). Empty without ProtoTree rows
    (or with results from before the strategies were recorded)."""
    return pd.DataFrame([
        {"dataset": d, "seed": r["seed"], "headline": r.get("headline", "greedy"),
         **{k: r["strategies"]["test"][k] for k in PROTOTREE_MEASURES},
         **{k: r["summary"][k] for k in PROTOTREE_SIZES}}
        for d, results in rows.items() for r in results
        if r["method"] == "prototree" and "test" in r.get("strategies", {})
    ])


def write_prototree_table(tree: pd.DataFrame, out_dir: Path) -> pd.DataFrame:
    """``prototree_table.csv`` (every seed) / ``.md`` (mean and std over seeds per dataset); the summary."""
    numeric = [*PROTOTREE_MEASURES, *PROTOTREE_SIZES]
    grouped = tree.groupby(["dataset", "headline"])
    summary = grouped[numeric].agg(["mean", "std"])
    summary.columns = [f"{a} {b}" for a, b in summary.columns]
    # one "mean ± sd" cell per measure (sd only with 2 seeds or more), so the table fits a page
    shown = pd.DataFrame({"seeds": grouped.size()})
    for k in numeric:
        shown[k] = mean_sd_cells(summary[f"{k} mean"], summary[f"{k} std"], 0 if k in PROTOTREE_SIZES else 3)
    write_table(tree, "# ProtoTree: the three inference strategies on test (mean and std over seeds)\n\n"
                "acc_*: accuracy of the soft (official headline), sample_max and greedy tree after pruning and "
                "projection; fidelity_*: share of images on which that strategy predicts the soft tree's class; "
                "near_uniform_*: share of images whose reached leaf has max class probability < 2 / C; headline: "
                "the strategy Table 1 reports.\n\n"
                + shown.reset_index().to_markdown(index=False, disable_numparse=True) + "\n",
                out_dir / "prototree_table")
    return summary


def iou_vs_quantile(rows: Rows, chance: pd.DataFrame) -> pd.DataFrame:
    """Long table dataset, method, seed, q, variant, iou of every method but the base model, and
    the random map, at each q the results were swept at."""
    qs = sorted({int(k[5:]) for results in rows.values() for k in results[0] if k.startswith("iou_q")})
    sweep = pd.DataFrame([
        {"dataset": d, "method": labels()[r["method"]], "seed": r["seed"], "q": q, "variant": v,
         "iou": r[key.format(q)]}
        for d, results in rows.items() for r in results if r["method"] != "base" for q in qs
        for v, key in VARIANT_KEYS.items() if key.format(q) in r
    ])
    return pd.concat([sweep, chance[chance["q"].isin(qs)]], ignore_index=True)


def write_iou_vs_quantile(sweep: pd.DataFrame, out_dir: Path) -> Any:
    """``iou_vs_quantile.csv`` / ``.md`` / ``.png`` / ``.pdf`` (Figure 3(b-f)): one panel per dataset in
    Table 1's column order (the paper's five and a user's own after them); the figure."""
    write_table(sweep, sweep.to_markdown(index=False), out_dir / "iou_vs_quantile")
    is_random = sweep["method"] == "Random map"
    # panels in Table 1's column order (the paper's), each titled with the benchmark it stands in for
    columns = [c for c in table1_columns(list(dict.fromkeys(sweep["dataset"]))) if c.run]
    names = {c.dataset: c.dataset if c.paper is None else f"{c.paper} ({c.dataset})" for c in columns}
    fig = plot_iou_sweep(sweep[~is_random], chance=sweep[is_random], order=[c.dataset for c in columns], names=names)
    save_figure(fig, out_dir / "iou_vs_quantile", dpi=PLOT_DPI)
    return fig


def paper_vs_reference(rows: Rows) -> pd.DataFrame:
    """Each (dataset, method, seed): IoU by the paper's definition and by the reference code's variant."""
    return pd.DataFrame([
        {"dataset": d, "method": labels()[r["method"]], "seed": r["seed"], "iou_paper": r["iou"],
         "iou_reference_variant": r["iou_reference"]}
        for d, results in rows.items() for r in results
    ])


def write_paper_vs_reference(ref: pd.DataFrame, out_dir: Path) -> pd.DataFrame:
    """``iou_paper_vs_reference.csv`` / ``.md`` (means per dataset and method); the means."""
    means = ref.groupby(["dataset", "method"], sort=False)[["iou_paper", "iou_reference_variant"]].mean()
    write_table(ref, means.to_markdown(floatfmt=".4f"), out_dir / "iou_paper_vs_reference")
    return means
