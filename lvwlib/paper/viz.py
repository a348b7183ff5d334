"""Plotting helpers: attention overlays, word patches (ProtoPNet protocol), curves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
import torch.nn.functional as F

from lvwlib.store.records import save_with

# Photo grids are large: 80 dpi keeps a 32-panel PNG near 1 MB (inline and on disk).
FIGURE_DPI = 80


def save_figure(fig: plt.Figure, stem: str | Path, dpi: int = FIGURE_DPI) -> None:
    """Save ``fig`` as ``<stem>.png`` and ``<stem>.pdf``, each atomically (line plots: dpi >= 150)."""
    stem = Path(stem)
    for suffix in (".png", ".pdf"):
        save_with(stem.with_suffix(suffix), lambda tmp, s=suffix: fig.savefig(tmp, format=s[1:], dpi=dpi, bbox_inches="tight"))


def to_numpy_image(image: torch.Tensor) -> np.ndarray:
    """[3, S, S] in [0, 1] -> [S, S, 3] numpy."""
    return image.permute(1, 2, 0).clamp(0, 1).numpy()


def upsample(map_: torch.Tensor, size: int) -> torch.Tensor:
    """[h, w] -> bilinear [size, size]."""
    return F.interpolate(map_[None, None].float(), size=(size, size), mode="bilinear", align_corners=False)[0, 0]


def overlay_grid(
    images: torch.Tensor, maps: Sequence[torch.Tensor], row_titles: Sequence[str], col_titles: Sequence[str] | None = None
) -> plt.Figure:
    """Images [B, 3, S, S] in the first row, then one row per map set [B, S, S] overlaid as a heatmap."""
    b = images.shape[0]
    fig, axes = plt.subplots(1 + len(maps), b, figsize=(1.8 * b, 1.8 * (1 + len(maps))), squeeze=False, dpi=FIGURE_DPI)
    for i in range(b):
        img = to_numpy_image(images[i])
        axes[0, i].imshow(img)
        if col_titles is not None:
            axes[0, i].set_title(col_titles[i], fontsize=8)
        for r, m in enumerate(maps, start=1):
            axes[r, i].imshow(img)
            axes[r, i].imshow(m[i].numpy(), cmap="jet", alpha=0.45, vmin=0, vmax=1)
    for r, title in enumerate(["image", *row_titles]):
        axes[r, 0].set_ylabel(title, fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def high_activation_box(activation: torch.Tensor, percentile: float = 95.0) -> tuple[int, int, int, int]:
    """Smallest box (row0, row1, col0, col1), inclusive, around pixels >= the percentile of
    an upsampled activation map [S, S] (ProtoPNet's visualisation protocol)."""
    threshold = np.percentile(activation.numpy(), percentile)
    rows, cols = np.nonzero(activation.numpy() >= threshold)
    return int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())


def plot_word_sources(
    images: Sequence[torch.Tensor],
    activations: Sequence[torch.Tensor],
    titles: Sequence[str],
    ncols: int = 8,
    thumb: int | None = None,
) -> plt.Figure:
    """Each word's source training image [3, S, S] with the box of its activation [S, S].

    ``thumb``: draw each image at this side (the box is found at full size, then scaled),
    which keeps a gallery of a hundred photos a few MB instead of tens.
    """
    n = len(images)
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.7 * ncols, 1.9 * nrows), squeeze=False, dpi=FIGURE_DPI)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, act, title in zip(axes.flat, images, activations, titles, strict=False):
        r0, r1, c0, c1 = high_activation_box(act)
        if thumb is not None and thumb < img.shape[-1]:
            scale = thumb / img.shape[-1]
            img = F.interpolate(img[None].float(), size=(thumb, thumb), mode="bilinear", antialias=True)[0]
            r0, r1, c0, c1 = (int(v * scale) for v in (r0, r1, c0, c1))
        ax.imshow(to_numpy_image(img))
        ax.add_patch(plt.Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0 + 1, r1 - r0 + 1, fill=False, color="yellow", lw=1.5))
        ax.set_title(title, fontsize=7)
    fig.tight_layout()
    return fig


def plot_history(history: Sequence[dict], keys: Sequence[str] = ("loss", "ce", "cluster", "align", "train_acc")) -> plt.Figure:
    """Training curves of a prototype network (warm-up, joint and last-layer rows)."""
    df = pd.DataFrame(history)
    present = [k for k in keys if k in df]
    fig, axes = plt.subplots(1, len(present), figsize=(3 * len(present), 2.6), squeeze=False)
    for ax, key in zip(axes[0], present, strict=True):
        for stage, part in df.groupby("stage"):
            ax.plot(part["epoch"], part[key], marker="o", ms=3, label=stage)
        ax.set_title(key)
        ax.set_xlabel("epoch")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_iou_vs_quantile(df: pd.DataFrame) -> plt.Figure:
    """Figure 3(b-f) style: IoU coverage vs quantile threshold q, one panel per dataset.

    ``df`` is long: dataset, method, seed, q, iou.
    """
    datasets = list(dict.fromkeys(df["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(3.6 * len(datasets), 3), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        sns.lineplot(data=df[df["dataset"] == dataset], x="q", y="iou", hue="method", marker="o", ax=ax, errorbar="sd")
        ax.set_title(dataset)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("quantile threshold q")
        ax.set_ylabel("IoU coverage")
        if ax is not axes[0, -1]:
            ax.get_legend().remove()
    sns.move_legend(axes[0, -1], "upper left", bbox_to_anchor=(1, 1), fontsize=7)
    fig.tight_layout()
    return fig


def example_indices(labels: Sequence[int], n: int) -> list[int]:
    """Up to ``n`` dataset positions, the first image of classes spread evenly over all classes."""
    first: dict[int, int] = {}
    for i, label in enumerate(labels):
        first.setdefault(int(label), i)
    classes = sorted(first)
    if len(classes) <= n:
        return [first[c] for c in classes]
    picks = np.linspace(0, len(classes) - 1, n).round().astype(int)
    return [first[classes[p]] for p in picks]


def compact_inline_figures(quality: int = 85) -> None:
    """Embed this notebook's inline figures as JPEG, not PNG.

    Photo grids with heatmaps compress ~4x better as JPEG, which keeps executed
    notebooks in ``results/notebooks`` small; files written by :func:`save_figure`
    stay PNG + PDF. A no-op outside IPython.
    """
    try:
        from IPython import get_ipython
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:
        return
    if get_ipython() is not None:
        set_matplotlib_formats("jpeg", pil_kwargs={"quality": quality})
