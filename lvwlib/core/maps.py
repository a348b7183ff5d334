"""Maps at image resolution: upsampling, combining word maps, and ProtoPNet's patch box.

The patch box is where a word's activation is high on an image.

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


def combined_word_map(
    word_maps: torch.Tensor, size: int, normalise: str = "max"
) -> torch.Tensor:
    """Pixel-wise max of activation maps upsampled to the image size.

    Args:
        word_maps: [B, k, h, w] activation (similarity) maps of the chosen words.
        size: S, the side of the output map.
        normalise: "max" divides each map by its max (the reference code);
            "minmax" scales it to [0, 1]; "none" leaves it.
    Returns:
        A^k, [B, S, S].
    """
    up = F.interpolate(word_maps, size=(size, size), mode="bilinear", align_corners=False)
    combined = up.max(dim=1).values
    return normalise_maps(combined, normalise)


def normalise_maps(maps: torch.Tensor, how: str) -> torch.Tensor:
    """Per-image normalisation of maps [B, S, S]: "max", "minmax" or "none"."""
    if how == "none":
        return maps
    flat = maps.flatten(1)
    if how == "max":
        return maps / (flat.max(dim=1).values.view(-1, 1, 1) + 1e-8)
    if how == "minmax":
        low = flat.min(dim=1).values.view(-1, 1, 1)
        high = flat.max(dim=1).values.view(-1, 1, 1)
        return (maps - low) / (high - low + 1e-8)
    raise ValueError(f"unknown normalisation {how!r}: expected max, minmax or none")


def upsample_cam(cams: torch.Tensor, size: int) -> torch.Tensor:
    """Low-resolution attention maps [B, h, w] -> bilinear [B, S, S], min-max scaled per image."""
    up = F.interpolate(cams[:, None], size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    return normalise_maps(up, "minmax")
