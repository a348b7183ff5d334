"""Evaluation metrics: accuracy and IoU coverage (paper Eq. 6, method.md section 6).

As in Quantus, hyper-parameters go to the constructor and data to the call,
and each metric states what it measures and which direction is better.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lvwlib.losses import combined_word_map, upsample_cam


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of images whose arg-max logit [N, C] equals the label [N]. Higher is better."""
    if logits.shape[0] == 0:
        raise ValueError("accuracy of an empty set")
    return (logits.argmax(dim=1) == labels).float().mean().item()


def quantile_mask(maps: torch.Tensor, q: float, variant: str = "paper") -> torch.Tensor:
    """Binary masks of maps [B, S, S] at each map's own q-th percentile.

    ``paper``: 1 where map >= percentile (the HIGH region, Eq. 6).
    ``reference``: 1 where map <= percentile (the LOW region, as the public
    reference code does; equal to the paper's only at q = 50 without ties,
    and then only up to the complement).
    The percentile is linear-interpolated, as numpy.percentile's default.
    """
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"quantile must be in [0, 100], got {q}")
    check_finite(maps, "maps")
    flat = maps.flatten(1).float()
    threshold = torch.quantile(flat, q / 100.0, dim=1).view(-1, 1, 1)
    if variant == "paper":
        return maps >= threshold
    if variant == "reference":
        return maps <= threshold
    raise ValueError(f"unknown IoU variant {variant!r}: expected paper or reference")


def check_finite(maps: torch.Tensor, what: str) -> None:
    """Raise ValueError when ``maps`` [B, ...] hold NaN or inf, naming ``what`` and the images.

    A NaN would otherwise make every comparison false: both masks empty, IoU 1.
    """
    bad = ~torch.isfinite(maps.flatten(1)).all(dim=1) if maps.ndim > 1 else ~torch.isfinite(maps)
    if bad.any():
        images = torch.nonzero(bad).flatten().tolist()
        raise ValueError(
            f"{what} hold NaN or inf values (batch positions {images[:10]}"
            f"{' ...' if len(images) > 10 else ''}): IoU is undefined"
        )


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image IoU of boolean masks [B, S, S] -> [B] (1 when both are empty)."""
    inter = (a & b).flatten(1).sum(dim=1).float()
    union = (a | b).flatten(1).sum(dim=1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


@dataclass(frozen=True)
class IoUCoverage:
    """IoU coverage between the base model's attention and the top-m words' attention.

    Measures how much of the region the base CNN attends to (high-attention
    region of Grad-CAM) is also the region the explanation's words attend to.
    Range [0, 1]; higher is better; 1 = the same high region.

    Args:
        q: percentile threshold (paper default 50).
        size: side S at which maps are compared (the image size).
        variant: "paper" (high regions) or "reference" (low regions).
    """

    q: float = 50.0
    size: int = 224
    variant: str = "paper"

    def __call__(self, cams: torch.Tensor, word_maps: torch.Tensor) -> torch.Tensor:
        """Per-image IoU [B].

        Args:
            cams: [B, hc, wc] base-model Grad-CAM (low resolution).
            word_maps: [B, m, h, w] activation maps of the m words chosen for
                each image (its m most activated words; ProtoTree: its path).
        """
        check_finite(cams, "Grad-CAM maps (cams)")
        check_finite(word_maps, "word activation maps (word_maps)")
        a_bar = upsample_cam(cams, self.size)
        a_k = combined_word_map(word_maps, self.size, normalise="minmax")
        return mask_iou(
            quantile_mask(a_bar, self.q, self.variant), quantile_mask(a_k, self.q, self.variant)
        )
