"""ProtoPNet's patch box: where a word's activation is high on an image.

ProtoPNet (``find_high_activation_crop``) upsamples a prototype's activation
map to the image size and boxes the pixels at or above its 95th percentile;
that box is the "training patch" shown for a pushed prototype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

PATCH_PERCENTILE = 95.0  # ProtoPNet's threshold for the visualised patch


def upsample_map(act: torch.Tensor, size: int, mode: str = "bicubic") -> torch.Tensor:
    """[h, w] activation map -> [size, size] (bicubic, as ProtoPNet's cv2.INTER_CUBIC)."""
    return F.interpolate(act[None, None].float(), size=(size, size), mode=mode, align_corners=False)[0, 0]


def high_activation_box(act: torch.Tensor, percentile: float = PATCH_PERCENTILE) -> tuple[int, int, int, int]:
    """Smallest box around the pixels at or above the ``percentile`` of ``act``.

    Args:
        act: [H, W] map (already at image resolution).
    Returns:
        (top, bottom, left, right), half-open: rows top..bottom-1, cols left..right-1.
    """
    if act.dim() != 2:
        raise ValueError(f"expected an [H, W] map, got shape {tuple(act.shape)}")
    threshold = torch.quantile(act.flatten().float(), percentile / 100.0)
    mask = act >= threshold
    rows = torch.nonzero(mask.any(dim=1)).flatten()
    cols = torch.nonzero(mask.any(dim=0)).flatten()
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def patch_box(act: torch.Tensor, size: int, percentile: float = PATCH_PERCENTILE) -> tuple[int, int, int, int]:
    """Box (top, bottom, left, right) of a latent-grid map [h, w] upsampled to a ``size`` image."""
    return high_activation_box(upsample_map(act, size), percentile)
