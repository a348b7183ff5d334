"""Which images go where: seeded per-class train/test splits, hold-out and subsampling.

Also :class:`_Splits`, what every loader returns before hold-out and
subsampling, and :func:`_seed_int`, the platform-independent seeds they use.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .images import LabelledImageDataset


def _seed_int(*parts: object) -> int:
    """A 64-bit seed from ``parts``, the same on every run and platform."""
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def split_per_class(
    files: dict[str, list[Path]], test_fraction: float, seed: int
) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
    """Seeded per-class train/test split; each part keeps the sorted order.

    A class of n >= 2 images gets round(fraction * n) test images, at least 1
    and at most n - 1; a class of one image goes to train only. Each class is
    shuffled with its own seed, so adding a class does not move the others.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"split_fraction must be in (0, 1), got {test_fraction}")
    train, test = {}, {}
    for c, paths in files.items():
        order = list(paths)
        random.Random(_seed_int(seed, "split", c)).shuffle(order)
        n = len(order)
        n_test = min(n - 1, max(1, round(test_fraction * n))) if n >= 2 else 0
        test[c] = sorted(order[:n_test])
        train[c] = sorted(order[n_test:])
    return train, test


def carve_validation(
    ds: LabelledImageDataset, fraction: float, seed: int
) -> tuple[LabelledImageDataset, LabelledImageDataset | None]:
    """Seeded, stratified (train, validation) split of a training set.

    Each class gives round(fraction * n) of its n images to validation (at
    least 1 when fraction > 0 and n >= 2, never all of them), drawn with a seed
    per (seed, class name), so holding a class out or adding one does not move
    the others. Both parts keep the original order. fraction 0: no validation.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"data.val_fraction must be in [0, 1), got {fraction}")
    if fraction == 0.0:
        return ds, None
    by_class: dict[int, list[int]] = {}
    for i, lab in enumerate(ds.labels):
        by_class.setdefault(lab, []).append(i)
    val_positions: set[int] = set()
    for lab, positions in by_class.items():
        n = len(positions)
        n_val = min(n - 1, max(1, round(fraction * n))) if n >= 2 else 0
        order = list(positions)
        random.Random(_seed_int(seed, "val", ds.classes[lab])).shuffle(order)
        val_positions.update(order[:n_val])
    train_idx = [i for i in range(len(ds.labels)) if i not in val_positions]
    val_idx = sorted(val_positions)
    train = ds.subset(train_idx, [ds.labels[i] for i in train_idx], ds.classes)
    val = ds.subset(val_idx, [ds.labels[i] for i in val_idx], ds.classes)
    return train, val


@dataclass
class _Splits:
    """What a loader returns, before hold-out and subsampling."""

    train: LabelledImageDataset
    test: LabelledImageDataset
    classes: list[str]
    human_names: dict[str, str]
    # A validation split of the dataset's own (a ``tune/`` folder): used instead of one
    # carved from ``train``, so tuning never takes images from training or test.
    val: LabelledImageDataset | None = None


def _validate_holdout(holdout: Iterable[str], classes: Sequence[str]) -> set[str]:
    # A bare string (``holdout_classes: bee`` in yaml) is one class, not its letters.
    held = {holdout} if isinstance(holdout, str) else set(holdout)
    unknown = sorted(held - set(classes))
    if unknown:
        raise ValueError(
            f"data.holdout_classes: unknown class(es) {unknown}; known classes: {', '.join(classes)}"
        )
    if held and held >= set(classes):
        raise ValueError("data.holdout_classes would remove every class from training")
    return held


def _restrict(ds: LabelledImageDataset, keep: Sequence[str]) -> LabelledImageDataset:
    """Items of the classes ``keep``, relabelled to index ``keep``."""
    if list(keep) == ds.classes:
        return ds
    new_label = {ds.classes.index(c): k for k, c in enumerate(keep)}
    positions = [i for i, lab in enumerate(ds.labels) if lab in new_label]
    return ds.subset(positions, [new_label[ds.labels[i]] for i in positions], list(keep))


def subsample_per_class(
    ds: LabelledImageDataset, cap: int | None, seed: int, split: str
) -> LabelledImageDataset:
    """At most ``cap`` items per class, drawn with a seed per (seed, split, class name).

    The kept items stay in their original (sorted) order. Seeding by class name
    means holding a class out does not change which images the others keep, and
    a held-out class keeps the images it would have had in test.
    """
    if cap is None:
        return ds
    if cap < 1:
        raise ValueError(f"max images per class must be >= 1 or None, got {cap}")
    by_class: dict[int, list[int]] = {}
    for i, lab in enumerate(ds.labels):
        by_class.setdefault(lab, []).append(i)
    if all(len(v) <= cap for v in by_class.values()):
        return ds
    chosen = []
    for lab, positions in by_class.items():
        if len(positions) > cap:
            rng = random.Random(_seed_int(seed, split, ds.classes[lab]))
            positions = rng.sample(positions, cap)
        chosen.extend(positions)
    chosen.sort()
    return ds.subset(chosen, [ds.labels[i] for i in chosen], ds.classes)
