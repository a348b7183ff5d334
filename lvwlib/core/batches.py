"""Mini-batches over cached trunk features with per-image random horizontal flip.

The cache holds, for every image, the trunk features of the image and of its
horizontal flip: ``feats`` is [N, 2, Ct, h, w] (index 0 original, 1 flipped).
Choosing a flip picks index 1 for the features AND for any per-image map
(Grad-CAM) that travels with them, so an image is never paired with the map of
its other orientation (a defect of the reference code).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import nn


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


# --------------------------------------------------------------------------- batch sources
# The training loops, push and Grad-CAM read their data through a *source*, so the
# same loop serves cached trunk features (CachedSource, below) and images streamed
# through DataLoader workers (lvwlib.core.streaming.StreamingSource). A source may hold
# only one rank's shard of every global batch (lvwlib.core.distributed).


def epoch_plan(n: int, generator: torch.Generator | None, shuffle: bool = True, random_flip: bool = True
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Image order [n] and per-image flips [n] of one epoch, drawn exactly as
    :func:`iterate_batches` draws them (so a 1-process run is unchanged)."""
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    flips = torch.randint(0, 2, (n,), generator=generator) if random_flip else torch.zeros(n, dtype=torch.long)
    return order, flips


def shard(idx: torch.Tensor, rank: int, world: int) -> tuple[torch.Tensor, float]:
    """This rank's part of a global batch ``idx`` [B] and its loss weight.

    Rank r takes ``idx[r::world]``, so the union over ranks is the global batch
    of a 1-process run. The weight ``n_local * world / B`` makes the mean of the
    ranks' weighted mean losses (what DDP's gradient averaging computes) equal
    the global batch mean even when shards differ in size. A rank left with no
    image takes the batch's first image with weight 0, so that every rank still
    runs the forward and backward pass DDP waits for.
    """
    if world == 1:
        return idx, 1.0
    local = idx[rank::world]
    if len(local) == 0:
        return idx[:1], 0.0
    return local, len(local) * world / len(idx)


class CachedSource:
    """Batches of cached trunk features ``feats`` [N, 2, Ct, h, w] (float16, CPU).

    Args:
        feats: [N, 2, Ct, h, w] (index 0 original, 1 flipped).
        labels: [N].
        cams: [N, 2, hc, wc] Grad-CAM of the same images, or None.
        device: where batches go.
        rank, world: this process's shard of every global batch (1 process: 0, 1).
    """

    def __init__(self, feats: torch.Tensor, labels: torch.Tensor, cams: torch.Tensor | None = None,
                 device: str | torch.device = "cpu", rank: int = 0, world: int = 1) -> None:
        if labels.shape[0] != feats.shape[0]:
            raise ValueError(f"{feats.shape[0]} feature rows but {labels.shape[0]} labels")
        self.feats, self.labels, self.cams = feats, labels, cams
        self.device, self.rank, self.world = torch.device(device), rank, world

    def __len__(self) -> int:
        return self.feats.shape[0]

    @property
    def has_cams(self) -> bool:
        return self.cams is not None

    def train_batches(self, batch_size: int, generator: torch.Generator, with_cams: bool
                      ) -> Iterator[tuple[FeatureBatch, float]]:
        """Shuffled, randomly flipped batches of this rank and their loss weights (see :func:`shard`)."""
        cams = self.cams if with_cams else None
        if with_cams and cams is None:
            raise ValueError("this source has no Grad-CAM maps")
        if self.world == 1:
            for batch in iterate_batches(self.feats, self.labels, batch_size, shuffle=True, random_flip=True,
                                         generator=generator, cams=cams, device=self.device):
                yield batch, 1.0
            return
        order, flips = epoch_plan(len(self), generator)
        for start in range(0, len(self), batch_size):
            idx, weight = shard(order[start : start + batch_size], self.rank, self.world)
            flip = flips[idx]
            cam = cams[idx, flip].float().to(self.device) if cams is not None else None
            yield FeatureBatch(idx, flip, self.feats[idx, flip].float().to(self.device),
                               self.labels[idx].to(self.device), cam), weight

    def ordered_batches(self, batch_size: int, flips: tuple[int, ...] = (0,)) -> Iterator[FeatureBatch]:
        """This rank's images in order, each in the orientations ``flips``.

        ``x`` is [B * len(flips), Ct, h, w], image-major (image 0 in every
        orientation, then image 1, ...); ``index``, ``y`` are [B].
        """
        positions = torch.arange(self.rank, len(self), self.world)
        for start in range(0, len(positions), batch_size):
            idx = positions[start : start + batch_size]
            if self.world == 1:  # a slice, as the code before sources did (same float results)
                x = self.feats[int(idx[0]) : int(idx[-1]) + 1][:, list(flips)]
            else:
                x = self.feats[idx][:, list(flips)]
            yield FeatureBatch(idx, torch.tensor(flips), x.flatten(0, 1).float().to(self.device),
                               self.labels[idx].to(self.device), None)


def as_source(feats: torch.Tensor | CachedSource | object, labels: torch.Tensor | None,
              cams: torch.Tensor | None = None, device: str | torch.device = "cpu"):
    """A feature tensor becomes a 1-process :class:`CachedSource`; a source is returned as is."""
    if isinstance(feats, torch.Tensor):
        if labels is None:  # callers that need no labels (word scores, Grad-CAM by prediction)
            labels = torch.zeros(feats.shape[0], dtype=torch.long)
        return CachedSource(feats, labels, cams, device)
    return feats


# Images per pass of a tail when nothing trains, on the CPU. Measured on this machine (one thread,
# EfficientNet-Lite0's conv_head + bn2 + the add-on, eval mode): 0.51 s per 1,024 images in passes of
# 16-64 images, 1.1-1.2 s in passes of 128-512 (the [B, 1280, 7, 7] output outgrows the caches).
# Passes of more images (word scores, push, predictions) are split into these. An image's output
# floats do not depend on the split when its pass holds a multiple of 16 images; in a shorter last
# pass (e.g. 8 of 1,220 x 2 word scores) oneDNN may pick another kernel: the last bits can differ
# (float order; tests/unit/test_batches_chunks.py compares with a tolerance).
CPU_INFERENCE_CHUNK = 64


def inference_in_chunks(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, modules: Iterable[nn.Module],
    chunk: int = CPU_INFERENCE_CHUNK,
) -> torch.Tensor:
    """``fn(x)``, computed in passes of at most ``chunk`` images when the split cannot change the result
    beyond float rounding.

    Split only on the CPU, without autograd and with every module of ``modules`` in eval mode:
    then each image's output depends on that image alone (batch norm uses its running
    statistics), and no hook (Grad-CAM) sees a part of the batch. Otherwise one pass.

    Args:
        fn: maps [B, ...] to [B, ...] image by image (a tail, a tail and add-on).
        x: [B, ...] input.
        modules: the modules ``fn`` runs (their ``training`` flags are checked).
    Returns:
        [B, ...] ``fn``'s output.
    """
    n = x.shape[0]
    if (n <= chunk or x.device.type != "cpu" or torch.is_grad_enabled()
            or any(m.training for m in modules)):
        return fn(x)
    return torch.cat([fn(x[s : s + chunk]) for s in range(0, n, chunk)])
