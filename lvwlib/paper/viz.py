"""Plotting helpers: attention overlays, word patches (ProtoPNet protocol), curves."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
import torch.nn.functional as F
from PIL import Image

from lvwlib.core.maps import high_activation_box
from lvwlib.store.records import save_with

THEME = {"style": "whitegrid", "context": "notebook"}  # the one seaborn theme of every figure
# Photo grids are large: 80 dpi keeps a 32-panel PNG near 1 MB (inline and on disk).
FIGURE_DPI = 80


def save_figure(
    fig: plt.Figure, stem: str | Path, dpi: int = FIGURE_DPI, formats: Sequence[str] = ("png", "pdf"),
    palette: bool = False,
) -> None:
    """Save ``fig`` as ``<stem>.<format>`` for each of ``formats``, each atomically (line plots: dpi >= 150).

    ``palette``: write the PNG with a 256-colour adaptive palette (median cut, Floyd-Steinberg
    dithering), which keeps a grid of a hundred photos under 1 MB instead of ~3 MB in RGB.
    """
    stem = Path(stem)
    for fmt in formats:
        if fmt == "png" and palette:
            save_with(stem.with_suffix(".png"), lambda tmp: _save_palette_png(fig, tmp, dpi))
        else:
            save_with(stem.with_suffix(f".{fmt}"),
                      lambda tmp, f=fmt: fig.savefig(tmp, format=f, dpi=dpi, bbox_inches="tight"))


def _save_palette_png(fig: plt.Figure, path: Path, dpi: int) -> None:
    """Render ``fig`` as an RGB PNG in memory, then write it to ``path`` with an adaptive 256-colour palette."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    buffer.seek(0)
    rgb = Image.open(buffer).convert("RGB")
    rgb.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG).save(
        path, format="png", optimize=True)


def to_numpy_image(image: torch.Tensor) -> np.ndarray:
    """[3, S, S] in [0, 1] -> [S, S, 3] numpy."""
    return image.permute(1, 2, 0).clamp(0, 1).numpy()


def show_map(ax: plt.Axes, image_side: int, map_: torch.Tensor, **kwargs) -> None:
    """Draw ``map_`` [s, s] over an image of side ``image_side``, stretched to cover it.

    Maps are measured at the evaluation size, which may differ from the image size
    (STL10: 96 px images, IoU at 224); drawing them over the image's pixel extent
    shows exactly the map (and mask) that was measured.
    """
    extent = (-0.5, image_side - 0.5, image_side - 0.5, -0.5)
    ax.imshow(map_.float().numpy(), extent=extent, **kwargs)


def draw_box(ax: plt.Axes, box: tuple[float, float, float, float], colour: str = "yellow", lw: float = 1.5) -> None:
    """Draw a half-open pixel box (top, bottom, left, right) over an image drawn with ``imshow``."""
    top, bottom, left, right = box
    ax.add_patch(plt.Rectangle((left - 0.5, top - 0.5), right - left, bottom - top, fill=False, color=colour, lw=lw))


def overlay_grid(
    images: torch.Tensor, maps: Sequence[torch.Tensor], row_titles: Sequence[str], col_titles: Sequence[str] | None = None
) -> plt.Figure:
    """Images [B, 3, S, S] in the first row, then one row per map set [B, s, s] overlaid as a heatmap (any s)."""
    b = images.shape[0]
    fig, axes = plt.subplots(1 + len(maps), b, figsize=(1.8 * b, 1.8 * (1 + len(maps))), squeeze=False, dpi=FIGURE_DPI)
    for i in range(b):
        img = to_numpy_image(images[i])
        axes[0, i].imshow(img)
        if col_titles is not None:
            axes[0, i].set_title(col_titles[i], fontsize=8)
        for r, m in enumerate(maps, start=1):
            axes[r, i].imshow(img)
            show_map(axes[r, i], img.shape[0], m[i], cmap="jet", alpha=0.45, vmin=0, vmax=1)
    for r, title in enumerate(["image", *row_titles]):
        axes[r, 0].set_ylabel(title, fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def plot_word_sources(
    images: Sequence[torch.Tensor],
    activations: Sequence[torch.Tensor],
    titles: Sequence[str],
    ncols: int = 8,
    thumb: int | None = None,
) -> plt.Figure:
    """Each word's source training image [3, S, S] with the box of its activation [S, S]
    (:func:`lvwlib.core.maps.high_activation_box`, ProtoPNet's 95th-percentile rule).

    ``thumb``: draw each image at this side (the box is found at full size, then scaled),
    which keeps a gallery of a hundred photos a few MB instead of tens.
    """
    n = len(images)
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.7 * ncols, 1.9 * nrows), squeeze=False, dpi=FIGURE_DPI)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, act, title in zip(axes.flat, images, activations, titles, strict=False):
        box = high_activation_box(act)  # half-open (top, bottom, left, right)
        if thumb is not None and thumb < img.shape[-1]:
            scale = thumb / img.shape[-1]
            img = F.interpolate(img[None].float(), size=(thumb, thumb), mode="bilinear", antialias=True)[0]
            box = tuple(v * scale for v in box)
        ax.imshow(to_numpy_image(img))
        draw_box(ax, box, "yellow")
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


def set_theme() -> None:
    """The seaborn theme of every figure and compact (JPEG) inline figures; set by every session."""
    sns.set_theme(**THEME)
    compact_inline_figures()
