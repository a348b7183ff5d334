"""Figures of the paper's analyses (Figures 2-5 and the word gallery); data in, figure out.

Line and bar plots are saved at :data:`PLOT_DPI`; photo grids at
:data:`lvwlib.paper.viz.FIGURE_DPI` (they are large).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from lvwlib.core.maps import high_activation_box
from lvwlib.paper.viz import FIGURE_DPI, draw_box, show_map, to_numpy_image

PLOT_DPI = 150  # line plots, heatmaps and bars
BOX_COLOUR = "yellow"


def _box(ax: plt.Axes, activation: torch.Tensor, colour: str = BOX_COLOUR) -> None:
    """Draw ProtoPNet's box (95th percentile, :func:`lvwlib.core.maps.high_activation_box`) of an
    activation [S, S] already upsampled to the image."""
    draw_box(ax, high_activation_box(activation), colour)


def _clean(ax: plt.Axes) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


def plot_iou_sweep(df: pd.DataFrame, chance: pd.DataFrame | None = None, order: Sequence[str] | None = None,
                   names: dict[str, str] | None = None) -> plt.Figure:
    """Figure 3(b-f) extended: IoU coverage vs q, one column per dataset, one row per IoU variant.

    Args:
        df: long table with dataset, method, seed, q, variant ("paper" | "reference"), iou.
        chance: the "Random map" rows (same columns) drawn as a dashed grey line.
        order: the datasets' panels from left to right (default: as they first appear in ``df``);
            datasets of ``df`` not in it follow.
        names: a panel title per dataset (default: the dataset's name).
    """
    present = list(dict.fromkeys(df["dataset"]))
    datasets = [d for d in (order or []) if d in present] + [d for d in present if d not in (order or [])]
    names = names or {}
    variants = [v for v in ("paper", "reference") if v in set(df["variant"])]
    fig, axes = plt.subplots(len(variants), len(datasets), figsize=(3.6 * len(datasets), 3.0 * len(variants)),
                             squeeze=False, sharey=True)
    titles = {"paper": "high regions (paper, Eq. 6)", "reference": "low regions (reference code)"}
    methods = list(dict.fromkeys(df["method"]))
    palette = dict(zip(methods, sns.color_palette(n_colors=len(methods)), strict=True))  # one colour per method
    legend: dict[str, Any] = {}  # label -> handle, over every panel (a panel may lack a method)
    for r, variant in enumerate(variants):
        for c, dataset in enumerate(datasets):
            ax = axes[r, c]
            part = df[(df["dataset"] == dataset) & (df["variant"] == variant)]
            sns.lineplot(data=part, x="q", y="iou", hue="method", marker="o", ax=ax, errorbar="sd", palette=palette,
                         hue_order=[m for m in methods if m in set(part["method"])])
            if chance is not None:
                ch = chance[(chance["dataset"] == dataset) & (chance["variant"] == variant)]
                if len(ch):
                    mean = ch.groupby("q")["iou"].mean()
                    ax.plot(mean.index, mean.values, ls="--", color="grey", label="random map")
            ax.set_title(f"{names.get(dataset, dataset)}\n{titles[variant]}", fontsize=9)
            ax.set_ylim(0, 1.02)
            ax.set_xlabel("quantile threshold q")
            ax.set_ylabel("IoU coverage")
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                legend.setdefault(label, handle)
            if ax.get_legend() is not None:
                ax.get_legend().remove()
    fig.legend(list(legend.values()), list(legend), loc="upper left", bbox_to_anchor=(1.0, 0.95), fontsize=8)
    fig.tight_layout()
    return fig


def plot_k_sweep(df: pd.DataFrame, dataset: str) -> plt.Figure:
    """Figure 3(a): accuracy and IoU coverage vs k; points are means over test halves, bars their sd.

    ``df``: k, split, accuracy, iou (one row per k and half).
    """
    fig, axes = plt.subplots(1, 2, figsize=(7.5, 3.0))
    for ax, col, label in zip(axes, ("accuracy", "iou"), ("accuracy", "IoU coverage (q = 50)"), strict=True):
        stats = df.groupby("k")[col].agg(["mean", "std"]).reset_index()
        ax.errorbar(stats["k"], stats["mean"], yerr=stats["std"].fillna(0), marker="o", capsize=3)
        ax.set_xscale("log")
        ax.set_xticks(stats["k"], [str(k) for k in stats["k"]])
        ax.minorticks_off()
        ax.set_xlabel("top words k in the alignment loss")
        ax.set_ylabel(label)
        ax.set_ylim(0, 1.02)
    fig.suptitle(f"Sensitivity to k ({dataset}; mean ± sd over 3 random test halves)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_class_correlation(corr: np.ndarray, names: Sequence[str]) -> plt.Figure:
    """Figure 4(a): class-by-class correlation of mean word-score vectors."""
    n = len(names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * n, 0.6 + 0.5 * n))
    sns.heatmap(pd.DataFrame(corr, index=names, columns=names), vmin=-1, vmax=1, cmap="vlag", annot=n <= 12,
                fmt=".2f", annot_kws={"fontsize": 7}, square=True, ax=ax, cbar_kws={"label": "Pearson correlation"})
    ax.set_title("Correlation of classes' mean word vectors", fontsize=10)
    fig.tight_layout()
    return fig


def plot_word_pairs(vectors: torch.Tensor, pairs: Sequence[tuple[int, int]], names: Sequence[str],
                    corr: np.ndarray, titles: Sequence[str]) -> plt.Figure:
    """Figure 4(b, c): the word vectors [C, M] of each chosen class pair as grouped bars."""
    m = vectors.shape[1]
    fig, axes = plt.subplots(len(pairs), 1, figsize=(max(6, 0.16 * m + 2), 2.4 * len(pairs)), squeeze=False)
    for ax, (i, j), title in zip(axes[:, 0], pairs, titles, strict=True):
        rows = [{"word": w, "class": names[c], "mean word score": float(vectors[c, w])} for c in (i, j) for w in range(m)]
        sns.barplot(data=pd.DataFrame(rows), x="word", y="mean word score", hue="class", ax=ax)
        ax.set_title(f"{title}: {names[i]} vs {names[j]} (r = {corr[i, j]:.2f})", fontsize=9)
        step = max(1, m // 25)
        ax.set_xticks(range(0, m, step), [str(w) for w in range(0, m, step)], fontsize=7)
        ax.set_xlabel("visual word")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


@dataclass
class WordMatch:
    """One word shown on a query image beside the training patch it was pushed onto."""

    query_activation: torch.Tensor  # [S, S] upsampled similarity map on the query image
    source_image: torch.Tensor  # [3, S, S]
    source_activation: torch.Tensor  # [S, S]
    title: str  # e.g. "word 12 (from: cat)"


def plot_word_matches(
    queries: Sequence[torch.Tensor], matches: Sequence[Sequence[WordMatch]], row_titles: Sequence[str],
    fig: plt.Figure | None = None,
) -> plt.Figure:
    """One row per (query, words): for each word the query with its box and the source patch with its box.

    ``fig``: draw into this figure or subfigure instead of a new one.
    """
    ncols = 2 * max(max(len(m) for m in matches), 1)
    if fig is None:
        fig = plt.figure(figsize=(1.55 * ncols, 1.8 * len(queries)), dpi=FIGURE_DPI, layout="constrained")
    axes = fig.subplots(len(queries), ncols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for r, (query, words, row_title) in enumerate(zip(queries, matches, row_titles, strict=True)):
        for w, match in enumerate(words):
            left, right = axes[r, 2 * w], axes[r, 2 * w + 1]
            left.imshow(to_numpy_image(query))
            _box(left, match.query_activation)
            right.imshow(to_numpy_image(match.source_image))
            _box(right, match.source_activation, "cyan")
            left.set_title("test image", fontsize=7)
            right.set_title(match.title, fontsize=7)
        axes[r, 0].axis("on")
        _clean(axes[r, 0])
        axes[r, 0].set_ylabel(row_title, fontsize=8)
    return fig


def plot_maps_row(
    image: torch.Tensor, maps: Sequence[torch.Tensor], titles: Sequence[str], fig: plt.Figure | None = None
) -> plt.Figure:
    """Figure 2(b): the image under each attention map [s, s] (base Grad-CAM, each method's A^m; any s)."""
    if fig is None:
        fig = plt.figure(figsize=(1.9 * len(maps), 2.2), dpi=FIGURE_DPI, layout="constrained")
    axes = fig.subplots(1, len(maps), squeeze=False)
    for ax, map_, title in zip(axes[0], maps, titles, strict=True):
        ax.imshow(to_numpy_image(image))
        show_map(ax, image.shape[-1], map_, cmap="jet", alpha=0.45, vmin=0, vmax=1)
        ax.set_title(title, fontsize=7)
        _clean(ax)
    return fig


def plot_source_histogram(counts: pd.DataFrame) -> plt.Figure:
    """Figure 5 (measured): source classes of held-out images' top words, one colour per held-out class."""
    n = counts["source_class"].nunique()
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * n + 2), 3.6))
    sns.barplot(data=counts, x="source_class", y="count", hue="heldout_class", ax=ax)
    ax.set_xlabel("class of the word's source training image")
    ax.set_ylabel("top-word occurrences")
    # long breed names: slanted, anchored at their right end so neighbours do not overlap
    plt.setp(ax.get_xticklabels(), rotation=35, ha="right", rotation_mode="anchor")
    ax.legend(title="held-out class", fontsize=7)
    fig.tight_layout()
    return fig


def plot_seen_unseen(df: pd.DataFrame, title: str | None = None) -> plt.Figure:
    """IoU coverage of seen vs unseen test images per method; bars: mean over seeds, whiskers: sd."""
    fig, ax = plt.subplots(figsize=(4.5, 3.0))
    per_seed = df.groupby(["method", "split", "seed"], as_index=False)["iou"].mean()
    sns.barplot(data=per_seed, x="method", y="iou", hue="split", errorbar="sd", ax=ax)
    ax.set_ylabel("IoU coverage (q = 50)")
    ax.set_xlabel("")
    ax.set_ylim(0, 1)
    ax.legend(title="test images", fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_figure2(
    image: torch.Tensor, methods: Sequence[str], matches: Sequence[Sequence[WordMatch]],
    maps: Sequence[torch.Tensor], map_titles: Sequence[str], title: str,
) -> plt.Figure:
    """Figure 2: (a) each method's top words on the test image beside their source patches,
    (b) the base Grad-CAM and each method's combined map with its IoU."""
    ncols = 2 * max(max(len(m) for m in matches), 1)
    width = max(1.55 * ncols, 1.9 * len(maps))
    fig = plt.figure(figsize=(width, 1.8 * len(methods) + 2.4), dpi=FIGURE_DPI, layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.8 * len(methods), 2.4])
    plot_word_matches([image] * len(methods), matches, methods, fig=top)
    top.suptitle("(a) top words on the test image (yellow) and the training patch each was pushed onto (cyan)",
                 fontsize=8)
    plot_maps_row(image, maps, map_titles, fig=bottom)
    bottom.suptitle("(b) base model Grad-CAM and each method's combined map of its top-m words", fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig
