"""Mini-batches over cached trunk features with per-image random horizontal flip.

The cache holds, for every image, the trunk features of the image and of its
horizontal flip: ``feats`` is [N, 2, Ct, h, w] (index 0 original, 1 flipped).
Choosing a flip picks index 1 for the features AND for any per-image map
(Grad-CAM) that travels with them, so an image is never paired with the map of
its other orientation (a defect of the reference code).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch


@dataclass
class FeatureBatch:
    index: torch.Tensor  # [B] long: positions in the dataset
    flip: torch.Tensor  # [B] long: 0 original, 1 flipped
    x: torch.Tensor  # [B, Ct, h, w] float32 trunk features
    y: torch.Tensor  # [B] long labels
    cam: torch.Tensor | None  # [B, hc, wc] float32 Grad-CAM maps of the same orientation, or None


def iterate_batches(
    feats: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    *,
    shuffle: bool,
    random_flip: bool,
    generator: torch.Generator | None = None,
    cams: torch.Tensor | None = None,
    device: str | torch.device = "cpu",
) -> Iterator[FeatureBatch]:
    """Yield :class:`FeatureBatch` over ``feats`` [N, 2, Ct, h, w] and ``labels`` [N].

    ``cams``, if given, is [N, 2, hc, wc] and is indexed with the same flip.
    Without ``random_flip`` every image is taken in its original orientation.
    """
    n = feats.shape[0]
    if labels.shape[0] != n:
        raise ValueError(f"{n} feature rows but {labels.shape[0]} labels")
    if cams is not None and cams.shape[0] != n:
        raise ValueError(f"{n} feature rows but {cams.shape[0]} attention maps")
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    flips = (
        torch.randint(0, 2, (n,), generator=generator)
        if random_flip
        else torch.zeros(n, dtype=torch.long)
    )
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        flip = flips[idx]
        x = feats[idx, flip].float().to(device)
        cam = cams[idx, flip].float().to(device) if cams is not None else None
        yield FeatureBatch(idx, flip, x, labels[idx].to(device), cam)
