"""The streaming path: images decoded by DataLoader workers, no trunk-feature cache.

When the whole backbone trains (``backbone.tail: all``, the paper's setting),
there is nothing frozen whose output could be cached: every step needs the
images. This module feeds the same training loops as the cached path
(:mod:`lvwlib.core.train`, :mod:`lvwlib.core.gradcam`, :mod:`lvwlib.core.push`) through a
*source* of batches:

- :class:`FlipCamDataset` returns, for a key ``(index, flip)``, the image in that
  orientation, the base model's Grad-CAM map *of the same orientation* and the
  label. Flips are drawn per sample by the epoch plan
  (:func:`lvwlib.core.batches.epoch_plan`), so an image is never paired with the map
  of its other orientation;
- the Grad-CAM maps are computed once per image and orientation over the whole
  backbone and cached as maps at the last layer's resolution ([N, 2, h, w],
  7 x 7 for ResNet-34 at 224 px), never as images (:func:`streaming_cams`);
- :class:`StreamingSource` yields batches of trunk outputs on the device
  (the trunk of ``tail: all`` only normalises); push and word scores stream
  over the training set in order.

Under DDP each rank's source holds its share of every global batch, as
:class:`lvwlib.core.batches.CachedSource` does.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lvwlib.core.batches import FeatureBatch, epoch_plan, shard
from lvwlib.core.config import RunConfig


def use_streaming(run: RunConfig) -> bool:
    """``streaming: on`` / ``off``, or ``auto``: stream when the whole backbone trains (``tail: all``)."""
    if run.streaming not in ("auto", "on", "off"):
        raise ValueError(f"streaming must be auto, on or off, got {run.streaming!r}")
    return run.streaming == "on" or (run.streaming == "auto" and run.backbone.tail == "all")


class FlipCamDataset(Dataset):
    """Items for keys ``(index, flip)``: (image [3, S, S] in [0, 1] in that orientation,
    flip, Grad-CAM [hc, wc] of that orientation (an empty tensor without maps), label).

    Args:
        images: a dataset of ``(image [3, S, S], label)`` (:func:`lvwlib.data.load_dataset`).
        cams: [N, 2, hc, wc] maps of the images (index 1: of the flipped image), or None.
    """

    def __init__(self, images: Dataset, cams: torch.Tensor | None = None) -> None:
        if cams is not None and cams.shape[0] != len(images):
            raise ValueError(f"{len(images)} images but {cams.shape[0]} attention maps")
        self.images, self.cams = images, cams

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int, torch.Tensor, int]:
        index, flip = key
        image, label = self.images[index]
        if flip:
            image = torch.flip(image, dims=[2])  # horizontal: the width axis of [3, S, S]
        cam = self.cams[index, flip] if self.cams is not None else torch.empty(0)
        return image, flip, cam, label


class StreamingSource:
    """Batches of images run through the frozen ``trunk`` on the device.

    Args:
        images: dataset of ``(image [3, S, S], label)`` with a ``labels`` list.
        trunk: frozen module [B, 3, S, S] -> [B, Ct, h, w] (``tail: all``: normalisation only).
        cams: [N, 2, hc, wc] Grad-CAM maps (CPU), or None.
        device: where batches go.
        num_workers: DataLoader workers decoding images.
        rank, world: this process's shard of every global batch (1 process: 0, 1).
    """

    def __init__(self, images: Any, trunk: nn.Module, cams: torch.Tensor | None = None,
                 device: str | torch.device = "cpu", num_workers: int = 0, rank: int = 0, world: int = 1) -> None:
        self.dataset = FlipCamDataset(images, cams)
        self.labels = torch.as_tensor(list(images.labels), dtype=torch.long)
        self.device = torch.device(device)
        self.trunk = trunk.to(self.device).eval()
        self.num_workers, self.rank, self.world = num_workers, rank, world

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def has_cams(self) -> bool:
        return self.dataset.cams is not None

    def with_cams(self, cams: torch.Tensor) -> StreamingSource:
        """The same images with Grad-CAM maps [N, 2, hc, wc]."""
        other = StreamingSource.__new__(StreamingSource)
        other.__dict__.update(self.__dict__)
        other.dataset = FlipCamDataset(self.dataset.images, cams)
        return other

    def _load(self, keys: list[list[tuple[int, int]]]) -> Iterator[tuple[torch.Tensor, ...]]:
        loader = DataLoader(
            self.dataset, batch_sampler=keys, num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda", persistent_workers=False,
        )
        for images, flips, cams, labels in loader:
            with torch.no_grad():
                x = self.trunk(images.to(self.device, non_blocking=True))
            yield x, flips, cams, labels

    def train_batches(self, batch_size: int, generator: torch.Generator, with_cams: bool
                      ) -> Iterator[tuple[FeatureBatch, float]]:
        """Shuffled batches, a random flip per image, and each batch's loss weight (see :func:`shard`)."""
        if with_cams and not self.has_cams:
            raise ValueError("this source has no Grad-CAM maps")
        order, flips = epoch_plan(len(self), generator)
        keys, weights, indices = [], [], []
        for start in range(0, len(self), batch_size):
            idx, weight = shard(order[start : start + batch_size], self.rank, self.world)
            keys.append([(int(i), int(flips[i])) for i in idx])
            weights.append(weight)
            indices.append(idx)
        for (x, flip, cams, labels), weight, idx in zip(self._load(keys), weights, indices, strict=True):
            cam = cams.float().to(self.device) if with_cams else None
            yield FeatureBatch(idx, flip, x, labels.to(self.device), cam), weight

    def ordered_batches(self, batch_size: int, flips: tuple[int, ...] = (0,)) -> Iterator[FeatureBatch]:
        """This rank's images in order, each in the orientations ``flips`` (image-major ``x``)."""
        positions = torch.arange(self.rank, len(self), self.world)
        chunks = [positions[s : s + batch_size] for s in range(0, len(positions), batch_size)]
        keys = [[(int(i), f) for i in chunk for f in flips] for chunk in chunks]
        for (x, _, _, _), idx in zip(self._load(keys), chunks, strict=True):
            yield FeatureBatch(idx, torch.tensor(flips), x, self.labels[idx].to(self.device), None)
