"""Evaluation metrics: accuracy and IoU coverage (paper Eq. 6, method.md section 6).

As in Quantus, hyper-parameters go to the constructor and data to the call,
and each metric states what it measures and which direction is better.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lvwlib.core.maps import combined_word_map, upsample_cam


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


def quantile_thresholds(maps: torch.Tensor, qs: list[float] | tuple[float, ...]) -> torch.Tensor:
    """Each map's own q-th percentiles, [Q, B], for maps [B, S, S] and Q percentiles.

    One sort per map serves every q (``torch.quantile`` with a vector of q); the
    values equal :func:`quantile_mask`'s threshold for each q, bit for bit.
    """
    for q in qs:
        if not 0.0 <= q <= 100.0:
            raise ValueError(f"quantile must be in [0, 100], got {q}")
    flat = maps.flatten(1).float()
    probs = torch.tensor([q / 100.0 for q in qs], dtype=flat.dtype, device=flat.device)
    return torch.quantile(flat, probs, dim=1)


def iou_sweep(
    cams: torch.Tensor, word_maps: torch.Tensor, qs: list[float] | tuple[float, ...], size: int
) -> dict[tuple[str, float], torch.Tensor]:
    """Per-image IoU coverage [B] for every percentile q and both variants, in one pass.

    Equal to ``IoUCoverage(q, size, variant)(cams, word_maps)`` for each (variant, q),
    but the maps are upsampled to ``size`` and sorted once, not 2 x Q times:
    evaluation was a third of a Table 1 cell before (benchmarks/bench_pipeline.py).

    Args:
        cams: [B, hc, wc] base-model Grad-CAM; word_maps: [B, m, h, w].
    Returns:
        {("paper" | "reference", q): IoU [B]}.
    """
    check_finite(cams, "Grad-CAM maps (cams)")
    check_finite(word_maps, "word activation maps (word_maps)")
    a_bar = upsample_cam(cams, size)
    a_k = combined_word_map(word_maps, size, normalise="minmax")
    t_bar = quantile_thresholds(a_bar, qs).view(len(qs), -1, 1, 1)
    t_k = quantile_thresholds(a_k, qs).view(len(qs), -1, 1, 1)
    out: dict[tuple[str, float], torch.Tensor] = {}
    for i, q in enumerate(qs):
        out[("paper", q)] = mask_iou(a_bar >= t_bar[i], a_k >= t_k[i])
        out[("reference", q)] = mask_iou(a_bar <= t_bar[i], a_k <= t_k[i])
    return out


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
