"""``synthetic``: a tiny generated set of coloured shapes, with object masks, for tests."""

from __future__ import annotations

from pathlib import Path

import torch

from lvwlib.core.config import DataConfig

from .images import TensorImageDataset
from .splits import _seed_int, _Splits

SYNTHETIC_CLASSES = ("square", "disc", "bar")
# Saturated, far apart colours on a mid-grey noisy background: learnable from colour alone.
_SYNTHETIC_COLOURS = {"square": (0.9, 0.15, 0.1), "disc": (0.1, 0.8, 0.2), "bar": (0.15, 0.3, 0.95)}


def _shape_mask(kind: str, size: int, gen: torch.Generator) -> torch.Tensor:
    """bool [S, S]: the class shape at a random position, fully inside the image."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")

    def corner(h: int, w: int) -> tuple[int, int]:
        y0 = int(torch.randint(0, size - h + 1, (1,), generator=gen))
        x0 = int(torch.randint(0, size - w + 1, (1,), generator=gen))
        return y0, x0

    if kind == "disc":
        r = max(1, round(0.2 * size))
        cy, cx = corner(2 * r + 1, 2 * r + 1)
        return (yy - cy - r) ** 2 + (xx - cx - r) ** 2 <= r * r
    if kind == "square":
        h = w = max(2, round(0.35 * size))
    else:  # horizontal bar
        h, w = max(1, round(0.15 * size)), max(3, round(0.6 * size))
    y0, x0 = corner(h, w)
    return (yy >= y0) & (yy < y0 + h) & (xx >= x0) & (xx < x0 + w)


def make_synthetic(n_per_class: int, image_size: int, seed: int, split: str) -> TensorImageDataset:
    """Generated images uint8 [N, 3, S, S] of 3 classes (``SYNTHETIC_CLASSES``) with masks [N, S, S].

    Each image is a coloured class shape (red square, green disc, blue
    horizontal bar) at a random position on uniform noise; ``masks`` marks the
    shape. Deterministic in (seed, split, n_per_class, image_size).
    """
    if image_size < 8:
        raise ValueError(f"synthetic images need image_size >= 8, got {image_size}")
    gen = torch.Generator().manual_seed(_seed_int(seed, "synthetic", split) % (2**63))
    images, masks, labels, ids = [], [], [], []
    for label, kind in enumerate(SYNTHETIC_CLASSES):
        colour = torch.tensor(_SYNTHETIC_COLOURS[kind]).view(3, 1, 1)
        for i in range(n_per_class):
            img = 0.35 + 0.3 * torch.rand(3, image_size, image_size, generator=gen)
            mask = _shape_mask(kind, image_size, gen)
            shape = colour + 0.05 * torch.randn(3, image_size, image_size, generator=gen)
            img = torch.where(mask, shape, img).clamp(0.0, 1.0)
            images.append((img * 255).round().to(torch.uint8))
            masks.append(mask)
            labels.append(label)
            ids.append(f"{split}/{kind}/{i:04d}")
    return TensorImageDataset(
        torch.stack(images), labels, list(SYNTHETIC_CLASSES), image_size, ids, torch.stack(masks)
    )


def _load_synthetic(cfg: DataConfig, root: Path | None) -> _Splits:
    train = make_synthetic(cfg.max_per_class or 12, cfg.image_size, cfg.seed, "train")
    test = make_synthetic(cfg.max_test_per_class or 6, cfg.image_size, cfg.seed, "test")
    classes = list(SYNTHETIC_CLASSES)
    return _Splits(train, test, classes, {c: c for c in classes})
