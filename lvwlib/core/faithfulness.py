"""Deletion and insertion curves of a saliency map (Petsiuk et al., RISE, BMVC 2018).

Is an explanation faithful to the decision of the model it explains? Remove the
pixels it ranks highest first (deletion): a faithful map makes the model's
probability of its own predicted class fall fast (low area under the curve).
Insert them first into a blurred image (insertion): the probability rises fast
(high area). Unlike IoU coverage, this asks the model itself, not the base
model's Grad-CAM, so it is not circular for LVW.

The definitions follow the RISE reference code: pixels in descending order of
saliency, ``steps`` equal steps over all pixels, the removed pixels set to 0
(black, on images in [0, 1]) for deletion, the inserted ones taken from a
Gaussian-blurred copy (kernel 11, sigma 5) for insertion, and the AUC the
trapezoid rule over the fraction of pixels changed, in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

# images [N, 3, S, S] in [0, 1] -> class probabilities [N, C]
PredictFn = Callable[[torch.Tensor], torch.Tensor]

BLUR_KERNEL = 11  # RISE's insertion substrate: Gaussian blur, kernel 11, sigma 5
BLUR_SIGMA = 5.0


def blurred(images: torch.Tensor) -> torch.Tensor:
    """The insertion start [B, 3, S, S]: each image blurred as in RISE."""
    # imported here: torchvision costs ~1 s to import, in every process that imports this module
    from torchvision.transforms.functional import gaussian_blur

    return gaussian_blur(images, [BLUR_KERNEL, BLUR_KERNEL], [BLUR_SIGMA, BLUR_SIGMA])


def pixel_order(saliency: torch.Tensor) -> torch.Tensor:
    """Pixel indices [B, S*S] from the most to the least salient (ties: lower index first)."""
    return torch.sort(saliency.flatten(1).float(), dim=1, descending=True, stable=True).indices


def perturbation_curve(
    predict: PredictFn,
    images: torch.Tensor,
    saliency: torch.Tensor,
    target: torch.Tensor,
    mode: str,
    steps: int = 16,
    batch_size: int = 64,
) -> torch.Tensor:
    """Probability of ``target`` as salient pixels are deleted or inserted: [B, steps + 1].

    Args:
        predict: images [N, 3, S, S] in [0, 1] -> probabilities [N, C] (the whole model).
        images: [B, 3, S, S] in [0, 1].
        saliency: [B, S, S] the explanation at image resolution (higher = more important).
        target: [B] the class whose probability is followed (the model's own prediction).
        mode: ``deletion`` (start from the image, set pixels to 0) or ``insertion``
            (start from the blurred image, put the image's pixels back).
        steps: number of equal steps over all S*S pixels; point i has changed
            min(i * ceil(S*S / steps), S*S) pixels.
    """
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode must be deletion or insertion, got {mode!r}")
    if saliency.shape != (images.shape[0], *images.shape[-2:]):
        raise ValueError(f"saliency {tuple(saliency.shape)} must be [B, S, S] for images {tuple(images.shape)}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    b, c, h, w = images.shape
    start, finish = (images, torch.zeros_like(images)) if mode == "deletion" else (blurred(images), images)
    order = pixel_order(saliency)  # [B, HW]
    per_step = math.ceil(h * w / steps)
    # rank of each pixel in the order: pixel p is changed at step i when rank[p] < i * per_step
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(h * w).expand(b, -1).contiguous())
    rank = rank.view(b, 1, h, w)
    curve = torch.empty(b, steps + 1)
    # all (image, step) pairs in batches of batch_size forward passes
    pairs = [(i, s) for s in range(steps + 1) for i in range(b)]
    for lo in range(0, len(pairs), batch_size):
        chunk = pairs[lo : lo + batch_size]
        idx = torch.tensor([i for i, _ in chunk])
        changed = torch.stack([rank[i] < s * per_step for i, s in chunk])  # [n, 1, S, S]
        x = torch.where(changed, finish[idx], start[idx])
        with torch.no_grad():
            probs = predict(x)
        for (i, s), p in zip(chunk, probs[torch.arange(len(chunk)), target[idx]].float().cpu(), strict=True):
            curve[i, s] = p
    return curve


def curve_auc(curve: torch.Tensor) -> torch.Tensor:
    """Area under curves [B, K+1] sampled at K+1 equally spaced points of [0, 1]: [B] (trapezoid rule)."""
    k = curve.shape[1] - 1
    if k < 1:
        raise ValueError("a curve needs at least two points")
    return (curve.sum(dim=1) - curve[:, 0] / 2 - curve[:, -1] / 2) / k
