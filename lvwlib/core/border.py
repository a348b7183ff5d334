"""Where on the latent grid an explanation lives: the border diagnostic.

A frozen trunk that zero-pads gives the cells on the edge of its h x w grid a
position code shared by every image; a method free to use it (no alignment) may
place its words there. These functions measure that: the share of word
locations (pushed patches, or the peaks of the maps an image is explained
with) on the grid's border cells, against the share of border cells (24 of 49
on a 7 x 7 grid), and the mean map of a method over a test set.
"""

from __future__ import annotations

import torch


def border_mask(h: int, w: int) -> torch.Tensor:
    """[h, w] bool: True on the first and last row and column."""
    if h < 1 or w < 1:
        raise ValueError(f"grid must be at least 1 x 1, got {h} x {w}")
    mask = torch.zeros(h, w, dtype=torch.bool)
    mask[0, :] = mask[-1, :] = True
    mask[:, 0] = mask[:, -1] = True
    return mask


def chance_border_share(h: int, w: int) -> float:
    """Share of border cells in an h x w grid (24/49 for 7 x 7): a uniform location's chance."""
    return border_mask(h, w).float().mean().item()


def border_share(rows: torch.Tensor, cols: torch.Tensor, h: int, w: int) -> float:
    """Share of the locations (rows [N], cols [N] on an h x w grid) that lie on a border cell."""
    rows, cols = rows.flatten().long(), cols.flatten().long()
    if rows.numel() == 0:
        raise ValueError("no locations")
    if rows.min() < 0 or cols.min() < 0 or rows.max() >= h or cols.max() >= w:
        raise ValueError(f"locations outside the {h} x {w} grid")
    return border_mask(h, w)[rows, cols].float().mean().item()


def peak_locations(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column [B, m] of each map's maximum, for maps [B, m, h, w] (ties: first in row-major order)."""
    b, m, h, w = maps.shape
    flat = maps.reshape(b, m, h * w).argmax(dim=2)
    return flat // w, flat % w


def map_border_share(maps: torch.Tensor) -> float:
    """Share of the peaks of maps [B, m, h, w] on border cells."""
    rows, cols = peak_locations(maps)
    return border_share(rows, cols, maps.shape[-2], maps.shape[-1])


def combined_grid(maps: torch.Tensor) -> torch.Tensor:
    """Each image's maps [B, m, h, w] max-combined and min-max scaled: [B, h, w] (IoU coverage's combination)."""
    combined = maps.float().amax(dim=1)  # [B, h, w]
    flat = combined.flatten(1)
    low, high = flat.min(1).values.view(-1, 1, 1), flat.max(1).values.view(-1, 1, 1)
    return (combined - low) / (high - low + 1e-8)


def mean_map(maps: torch.Tensor) -> torch.Tensor:
    """A method's mean map [h, w]: each image's maps [B, m, h, w] max-combined, min-max scaled, averaged.

    The combination is the one IoU coverage uses at grid resolution, so the mean
    shows where a method's explanations sit regardless of the image.
    """
    return combined_grid(maps).mean(dim=0)


def cams_on_grid(cams: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Grad-CAM maps [B, hc, wc] (stored resized) average-pooled onto the h x w grid: [B, 1, h, w].

    The base model's row of the diagnostic: its Grad-CAM's peak on the grid the methods' maps live on.
    """
    return torch.nn.functional.adaptive_avg_pool2d(cams.float()[:, None], (h, w))


def location_shares(maps: torch.Tensor, push_rows: torch.Tensor | None = None,
                    push_cols: torch.Tensor | None = None) -> dict[str, float]:
    """The border shares of one model on one split, against chance.

    Args:
        maps: [B, m, h, w] the maps each image is explained with.
        push_rows, push_cols: [M] grid cells of the words' push locations; None (or empty): no words.
    Returns:
        ``word_border`` (share of push locations on the border; nan without words), ``peak_border``
        (share of the maps' peaks on the border) and ``chance`` (the border's share of the grid).
    """
    h, w = maps.shape[-2:]
    word = float("nan")
    if push_rows is not None and push_cols is not None and push_rows.numel():
        word = border_share(push_rows, push_cols, h, w)
    return {"word_border": word, "peak_border": map_border_share(maps), "chance": chance_border_share(h, w)}
