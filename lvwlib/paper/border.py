"""The border diagnostic of every Table 1 row (notebook 11): do explanations sit on the grid's edge?

A frozen trunk that zero-pads gives the border cells of its h x w grid a position code shared
by every image (:mod:`lvwlib.core.border`). For each method, dataset and seed this module
measures, on the test set,

- ``word_border``: the share of the words' push locations (:class:`~lvwlib.core.push.WordSource`
  rows/cols) on the 24 border cells of a 7 x 7 grid (methods with words only);
- ``peak_border``: the share of the peaks of each test image's top-m maps on the border
  (the base model's row: its Grad-CAM's peak);
- ``chance``: the border share of a uniform location, 24/49;
- ``iou_grid`` and ``iou_centred``: IoU coverage against the base Grad-CAM of each image's
  combined map (max over its m maps at grid resolution, min-max scaled), before and after
  subtracting the method's mean map over the test set. Both are computed the same way, so
  they differ only by the subtraction (``iou_grid`` takes the max before upsampling; Table 1's
  IoU after, so the two differ slightly).

:func:`calibration_markdown` shows the same shares on the VALIDATION split from the trunk calibration
(``params/calibration_trunk.yaml``): before (``zeros``) and after each trunk change, with each row's
validation accuracy and IoU.

The results carry a ``stage`` label (:func:`trunk_stage`: "before trunk change" for the zero-padded
trunk, "after trunk change" for any other ``backbone.border``) so runs on either trunk sit side by side.
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from lvwlib.core.border import cams_on_grid, combined_grid, location_shares
from lvwlib.core.metrics import iou_coverage
from lvwlib.experiment.evaluate import EVAL_BATCH
from lvwlib.experiment.models import TrainedModel, explained_maps, push_cells
from lvwlib.methods import registry
from lvwlib.paper.tables import mean_sd_cells

STAGE_BEFORE = "before trunk change"
STAGE_AFTER = "after trunk change"
COLUMNS = ("word_border", "peak_border", "chance", "iou_grid", "iou_centred")


def test_maps(model: TrainedModel, feats: torch.Tensor, m: int, batch_size: int = EVAL_BATCH) -> torch.Tensor:
    """The maps each test image is explained with, as in Table 1: feats [N, 2, Ct, h, w] -> [N, m', h, w]."""
    return explained_maps(model, feats, m, batch_size)


def centred_iou(cams: torch.Tensor, maps: torch.Tensor, q: float, size: int) -> tuple[float, float, torch.Tensor]:
    """(mean IoU of the combined maps, mean IoU after subtracting their mean map, the mean map [h, w]).

    Args:
        cams: [B, hc, wc] base Grad-CAM; maps: [B, m, h, w] the images' maps.
    """
    grid = combined_grid(maps)  # [B, h, w]
    mean = grid.mean(dim=0)  # the method's mean map (lvwlib.core.border.mean_map)
    plain = iou_coverage(cams, grid[:, None], q, size).mean().item()
    centred = iou_coverage(cams, (grid - mean)[:, None], q, size).mean().item()
    return plain, centred, mean


def border_row(
    maps: torch.Tensor, cams: torch.Tensor, q: float, size: int, push: list[Any] | None = None,
) -> tuple[dict[str, float], torch.Tensor]:
    """One row of the diagnostic and the mean map [h, w].

    Args:
        maps: [N, m, h, w] the test images' maps; cams: [N, hc, wc] their base Grad-CAM.
        push: the words' push sources (objects with ``row`` and ``col``); None without words.
    """
    rows, cols = push_cells(push)
    plain, centred, mean = centred_iou(cams, maps, q, size)
    return {**location_shares(maps, rows, cols), "iou_grid": plain, "iou_centred": centred}, mean


def border_rows(
    prep: Any, base: Any, models: dict[str, TrainedModel], dataset: str, seed: int, stage: str = STAGE_BEFORE,
) -> tuple[pd.DataFrame, dict[str, torch.Tensor]]:
    """The diagnostic of the base model's Grad-CAM and every model of one dataset and seed.

    Args:
        prep, base: the dataset's prepared data and the base model of ``seed``.
        models: method name -> trained model, in Table 1 order.
    Returns:
        rows (dataset, seed, stage, method, :data:`COLUMNS`) and method label -> mean map [h, w]; the
        first row is the base model's Grad-CAM (its peak; no words).
    """
    ev = prep.exp.run.eval
    cams = base.test_cams[:, 0].float()
    entries = [(model.label, test_maps(model, prep.test_feats, ev.top_m),
                model.words.push if model.words is not None else None) for model in models.values()]
    # the base row: Grad-CAM's peak on the grid the methods' maps live on (the tail output; Grad-CAM
    # is stored resized), by average pooling
    h, w = entries[0][1].shape[-2:] if entries else prep.test_feats.shape[-2:]
    cam_grid = cams_on_grid(cams, h, w)
    entries.insert(0, (registry.label(registry.reference()), cam_grid, None))
    rows, means = [], {}
    for name, maps, push in entries:
        row, mean = border_row(maps, cams, ev.quantile, ev.eval_size, push)
        rows.append({"dataset": dataset, "seed": seed, "stage": stage, "method": name, **row})
        means[name] = mean
    return pd.DataFrame(rows), means


def summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean and sd over seeds of every column, per stage, dataset and method (row order kept)."""
    keys = ["stage", "dataset", "method"]
    grouped = rows.groupby(keys, sort=False)[list(COLUMNS)]
    out = grouped.mean().add_suffix(" mean").join(grouped.std().add_suffix(" sd"))
    out["seeds"] = grouped.size()
    return out.reset_index()


def summary_markdown(rows: pd.DataFrame) -> str:
    """The table as markdown: one line per stage, dataset and method, ``mean ± sd`` cells."""
    s = summary(rows)
    table = s[["stage", "dataset", "method", "seeds"]].copy()
    for col in COLUMNS:
        table[col] = mean_sd_cells(s[f"{col} mean"], s[f"{col} sd"])
    return ("# Border diagnostic\n\nShare of word push locations (`word_border`) and of test-map peaks "
            "(`peak_border`) on the border cells of the trunk grid, against a uniform location's share "
            "(`chance`, 24/49 on 7 x 7); IoU coverage (q from the params) of each image's combined grid map "
            "before (`iou_grid`) and after (`iou_centred`) subtracting the method's mean map. Mean ± sd over "
            "seeds.\n\n" + table.to_markdown(index=False) + "\n")


def plot_mean_maps(means: dict[str, dict[str, torch.Tensor]], title: str = "") -> plt.Figure:
    """One panel per method (columns) and dataset (rows): the method's mean map, averaged over seeds.

    Args:
        means: dataset -> method label -> mean map [h, w] (already averaged over seeds).
    """
    datasets = list(means)
    methods = list(dict.fromkeys(m for d in datasets for m in means[d]))
    fig, axes = plt.subplots(len(datasets), len(methods), figsize=(1.9 * len(methods), 2.0 * len(datasets)),
                             squeeze=False)
    for r, d in enumerate(datasets):
        for c, m in enumerate(methods):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if m in means[d]:
                ax.imshow(means[d][m].numpy(), cmap="viridis", vmin=0, vmax=1)
            if r == 0:
                ax.set_title(m, fontsize=8)
            if c == 0:
                ax.set_ylabel(d, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def trunk_stage(border: str) -> str:
    """The stage label of a run whose trunk pads with ``border`` (``backbone.border``): the zero-padded
    trunk is the one before issue 15's trunk change, every other border is after it."""
    return STAGE_BEFORE if border == "zeros" else STAGE_AFTER


def file_stem(stage: str) -> str:
    """``border_diagnostic_<stage in snake case>``: each stage's files sit beside the others'."""
    slug = "".join(ch if ch.isalnum() else "_" for ch in stage.lower()).strip("_")
    return f"border_diagnostic_{slug}"


# --------------------------------------------------------------------------- before / after, validation

TRUNK_CALIBRATION = "calibration/trunk"  # under the results folder: `calibrate --variants params/calibration_trunk.yaml`
BEFORE = "zeros"  # the variant of the trunk before the change (its own zero padding)


def calibration_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, method, variant) of trunk-calibration rows: validation accuracy, IoU and border shares,
    mean over seeds, methods in registry order (the base model first), variants in the file's order."""
    columns = ["val_accuracy", "val_iou", "word_border", "peak_border", "chance"]
    grouped = rows.groupby(["dataset", "method", "variant"], sort=False)
    out = grouped[columns].mean()
    out["seeds"] = grouped.size()
    out = out.reset_index()
    order = {m: i for i, m in enumerate(registry.names())}
    variants = {v: i for i, v in enumerate(dict.fromkeys(rows["variant"]))}
    key = out["method"].map(lambda m: order.get(m, len(order))) * 100 + out["variant"].map(variants)
    return out.assign(_key=key).sort_values(["dataset", "_key"], kind="stable").drop(columns="_key")


def chosen_variant(variants: dict[str, dict[str, Any]], backbone: dict[str, Any]) -> str | None:
    """The trunk-calibration variant that is the run's backbone: its overrides hold a ``backbone`` section
    only, every value equal to ``backbone``'s (several: the one with the most values); None: none is.

    Args:
        variants: variant name -> overrides (the calibration's run record or the variants file).
        backbone: the run's backbone config as a dict (``to_dict(run.backbone)``).
    """
    best, size = None, -1
    for name, overrides in variants.items():
        overrides = overrides or {}
        section = overrides.get("backbone") or {}
        if set(overrides) - {"backbone"} or not all(backbone.get(k) == v for k, v in section.items()):
            continue
        if len(section) > size:
            best, size = name, len(section)
    return best


def calibration_markdown(rows: pd.DataFrame, chosen: str | None = None) -> str:
    """The border diagnostic before (``zeros``) and after each trunk change, VALIDATION split, as markdown.

    Args:
        rows: the per-seed rows of the trunk calibration (``calibration_*.csv`` under
            :data:`TRUNK_CALIBRATION`: dataset, variant, method, seed, val_accuracy, val_iou, word_border,
            peak_border, chance).
        chosen: the variant the reported run uses (:func:`chosen_variant`; its rows are marked); None: none.
    """
    s = calibration_summary(rows)
    table = pd.DataFrame({
        "dataset": s["dataset"], "method": [registry.label(m) if m in registry.names() else m for m in s["method"]],
        "trunk": [f"{v} (before)" if v == BEFORE else v for v in s["variant"]],
        "chosen": ["yes" if chosen is not None and v == chosen else "" for v in s["variant"]],
        "seeds": s["seeds"],
    })
    for col in ("val_accuracy", "val_iou", "word_border", "peak_border", "chance"):
        table[col] = ["–" if np.isnan(v) else f"{v:.3f}" for v in s[col]]
    note = f" The trunk of this run: variant `{chosen}` (column `chosen`)." if chosen else ""
    return ("# Border diagnostic before / after the trunk change (validation split)\n\n"
            "From the trunk calibration (`python -m lvwlib calibrate --variants params/calibration_trunk.yaml`, "
            f"`results/{TRUNK_CALIBRATION}`): VALIDATION numbers, never the test set; mean over seeds. `zeros` is "
            "the frozen trunk before the change (its zero padding), the other variants the candidates "
            "(`backbone.border`, `backbone.tail`; docs/choices.md). `word_border` / `peak_border`: share of the words' push locations "
            "and of the validation maps' peaks (base: its Grad-CAM's) on the grid's border cells; `chance`: "
            "a uniform location's share." + note + "\n\n" + table.to_markdown(index=False, disable_numparse=True) + "\n")
