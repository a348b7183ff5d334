"""Evaluation metrics: accuracy and IoU coverage (paper Eq. 6, method.md section 6).

:func:`coverage` is the one implementation of the IoU chain (upsample each map to the
evaluation size, combine the top m, mask at q, IoU; the paper's high-region variant and
the reference code's low-region one); :func:`iou_sweep` (Table 1) and
:func:`iou_coverage` (one q) read it.
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


def quantile_thresholds(maps: torch.Tensor, qs: list[float] | tuple[float, ...]) -> torch.Tensor:
    """Each map's own q-th percentiles, [Q, B], for maps [B, S, S] and Q percentiles.

    One sort per map serves every q (``torch.quantile`` with a vector of q, linear
    interpolation as numpy.percentile's default); each q's value equals a single-q
    call's bit for bit.
    """
    for q in qs:
        if not 0.0 <= q <= 100.0:
            raise ValueError(f"quantile must be in [0, 100], got {q}")
    flat = maps.flatten(1).float()
    probs = torch.tensor([q / 100.0 for q in qs], dtype=flat.dtype, device=flat.device)
    return torch.quantile(flat, probs, dim=1)


VARIANTS = ("paper", "reference")  # high regions (Eq. 6) and the reference code's low regions


@dataclass
class Coverage:
    """The two attention maps at the evaluation size and their per-image percentiles.

    What IoU coverage compares (paper Eq. 6): A-bar, the base model's Grad-CAM, and
    A^k, the pixel-wise max of the top-m word maps, both upsampled to S and min-max
    scaled per image. :func:`coverage` builds it; every IoU of the package (Table 1,
    figures, explorer, notebooks, lessons) comes from :meth:`iou`, so none can drift.
    """

    cam: torch.Tensor  # [B, S, S] A-bar in [0, 1]
    words: torch.Tensor  # [B, S, S] A^k in [0, 1]
    qs: tuple[float, ...]  # the percentiles the thresholds are for
    cam_thresholds: torch.Tensor  # [Q, B, 1, 1] each map's q-th percentile
    word_thresholds: torch.Tensor  # [Q, B, 1, 1]

    def masks(self, q: float, variant: str = "paper") -> tuple[torch.Tensor, torch.Tensor]:
        """Boolean masks [B, S, S] of A-bar and A^k at q: high regions (``paper``) or low (``reference``)."""
        if q not in self.qs:
            raise ValueError(f"no threshold for q = {q}: this coverage was computed for {list(self.qs)}")
        i = self.qs.index(q)
        if variant == "paper":
            return self.cam >= self.cam_thresholds[i], self.words >= self.word_thresholds[i]
        if variant == "reference":
            return self.cam <= self.cam_thresholds[i], self.words <= self.word_thresholds[i]
        raise ValueError(f"unknown IoU variant {variant!r}: expected paper or reference")

    def iou(self, q: float, variant: str = "paper") -> torch.Tensor:
        """Per-image IoU coverage [B] at q."""
        return mask_iou(*self.masks(q, variant))


def coverage(
    cams: torch.Tensor, word_maps: torch.Tensor, qs: list[float] | tuple[float, ...], size: int
) -> Coverage:
    """Upsample each map to ``size``, combine the top-m word maps, find each map's percentiles.

    The maps are upsampled and sorted once for every q (``torch.quantile`` with a vector
    of q gives each q's threshold bit for bit as a single-q call).

    Args:
        cams: [B, hc, wc] base-model Grad-CAM (low resolution).
        word_maps: [B, m, h, w] activation maps of the m words chosen for each image
            (its m most activated words; ProtoTree: its path).
        qs: percentiles in [0, 100].
        size: S, the evaluation size (``eval.eval_size``), not necessarily the image size.
    """
    check_finite(cams, "Grad-CAM maps (cams)")
    check_finite(word_maps, "word activation maps (word_maps)")
    qs = tuple(qs)
    a_bar = upsample_cam(cams, size)
    a_k = combined_word_map(word_maps, size, normalise="minmax")
    t_bar = quantile_thresholds(a_bar, qs).view(len(qs), -1, 1, 1)
    t_k = quantile_thresholds(a_k, qs).view(len(qs), -1, 1, 1)
    return Coverage(a_bar, a_k, qs, t_bar, t_k)


def iou_sweep(
    cams: torch.Tensor, word_maps: torch.Tensor, qs: list[float] | tuple[float, ...], size: int
) -> dict[tuple[str, float], torch.Tensor]:
    """Per-image IoU coverage [B] for every percentile q and both variants, in one pass.

    The maps are upsampled to ``size`` and sorted once, not 2 x Q times:
    evaluation was a third of a Table 1 cell before (benchmarks/bench_pipeline.py).

    Args:
        cams: [B, hc, wc] base-model Grad-CAM; word_maps: [B, m, h, w].
    Returns:
        {("paper" | "reference", q): IoU [B]}.
    """
    cov = coverage(cams, word_maps, qs, size)
    return {(variant, q): cov.iou(q, variant) for q in cov.qs for variant in VARIANTS}


def iou_coverage(
    cams: torch.Tensor, word_maps: torch.Tensor, q: float, size: int, variant: str = "paper"
) -> torch.Tensor:
    """Per-image IoU coverage [B] at one q: :func:`iou_sweep` for a single (variant, q).

    Measures how much of the region the base CNN attends to (Grad-CAM's high region)
    is also the region the explanation's words attend to. Range [0, 1]; higher is better.
    """
    return coverage(cams, word_maps, [q], size).iou(q, variant)


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
