"""The result of :func:`~lvwlib.data.load_dataset`: :class:`DatasetBundle`, and its fingerprint."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from torch.utils.data import Dataset

from .images import LabelledImageDataset


@dataclass
class DatasetBundle:
    """Train and test splits of one dataset, after hold-out and subsampling.

    ``classes`` are the training classes in label order; ``heldout`` (or None)
    holds the test images of ``heldout_classes``, its labels indexing
    ``heldout_classes``. ``human_names`` maps every class name (held-out ones
    included) to a readable name. ``root`` is the folder read, None if generated.
    """

    name: str
    train: LabelledImageDataset
    test: LabelledImageDataset
    classes: list[str]
    image_size: int
    heldout: LabelledImageDataset | None = None
    val: LabelledImageDataset | None = None  # carved from the training images; None if val_fraction 0
    heldout_classes: list[str] = field(default_factory=list)
    root: str | None = None
    human_names: dict[str, str] = field(default_factory=dict)

    def fingerprint(self) -> str:
        """sha256 hex of what a cache built from this bundle depends on.

        Covers the name, image size, classes and, per split, the ids and labels
        (plus file sizes for files, pixel hash for in-memory images), so any
        change in the selected images changes the key. ``root`` is left out on
        purpose: the same data at another path gives the same key.
        """
        payload = {
            "name": self.name,
            "image_size": self.image_size,
            "classes": self.classes,
            "heldout_classes": self.heldout_classes,
            "train": _fingerprint_items(self.train),
            "test": _fingerprint_items(self.test),
            "heldout": _fingerprint_items(self.heldout) if self.heldout is not None else None,
            "val": _fingerprint_items(self.val) if self.val is not None else None,
        }
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def summary(self) -> str:
        """One line: name, classes and split sizes."""
        held = f", {len(self.heldout)} held-out test images" if self.heldout is not None else ""
        val = f"{len(self.val)} val, " if self.val is not None else ""
        return (
            f"{self.name}: {len(self.classes)} classes, {len(self.train)} train, {val}"
            f"{len(self.test)} test images{held}, {self.image_size}px"
        )


def _fingerprint_items(ds: Dataset) -> list[Any]:
    if isinstance(ds, LabelledImageDataset):
        return ds.fingerprint_items()
    return [list(getattr(ds, "ids", [])), list(getattr(ds, "labels", []))]
