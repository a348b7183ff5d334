"""The registry :data:`DATASETS` and the one entry point :func:`load_dataset`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lvwlib.core.config import DataConfig
from lvwlib.store.paths import data_root

from .bundle import DatasetBundle
from .errors import DatasetNotFoundError
from .folders import _load_class_folders, _offline_loader
from .paper_sets import _flowers102_loader, _load_awa2, _load_stanford_dogs, _torchvision_loader
from .splits import _restrict, _Splits, _validate_holdout, carve_validation, subsample_per_class
from .synthetic import _load_synthetic


@dataclass(frozen=True)
class DatasetSpec:
    description: str  # one line: what it is
    obtain: str  # how to get it onto this machine
    loader: Callable[[DataConfig, Any], _Splits]
    needs_root: bool = True  # False: generated, no folder


DATASETS: dict[str, DatasetSpec] = {
    "imagenette": DatasetSpec(
        "10 ImageNet classes (fast.ai Imagenette), offline stand-in for STL10; train/ + val/",
        "`make data` links data/imagenette -> ../shared/datasets/imagenette",
        _offline_loader("imagenette", "val"),
    ),
    "imagewoof": DatasetSpec(
        "10 ImageNet dog breeds (fast.ai Imagewoof), offline stand-in for Stanford Dogs; train/ + val/",
        "`make data` links data/imagewoof -> ../shared/datasets/imagewoof",
        _offline_loader("imagewoof", "val"),
    ),
    "flowers17": DatasetSpec(
        "Oxford 17 flowers (quick runs and the classroom); train/ + test/",
        "`make data` links data/flowers17 -> ../shared/datasets/flowers17",
        _offline_loader("flowers17", "test"),
    ),
    "food101_10": DatasetSpec(
        "10 classes of real Food-101 photos, offline stand-in for Food-101; train/ + val/",
        "`make data` links data/food101_10 -> ../shared/datasets/food101_10",
        _offline_loader("food101_10", "val"),
    ),
    "animals22": DatasetSpec(
        "22 animal species (web photos, deduplicated), offline stand-in for AwA2; train/ + val/",
        "`make data` links data/animals22 -> ../shared/datasets/animals22",
        _offline_loader("animals22", "val"),
    ),
    "stl10": DatasetSpec(
        "STL10 (paper), 10 classes, 96 px natively (set image_size: 96 to keep it); train/test",
        "torchvision: data.download: true (internet), or stl10_binary/ under the root",
        _torchvision_loader("stl10"),
    ),
    "flowers102": DatasetSpec(
        "Oxford 102 Flowers (paper): official train split for training, official val split for testing; "
        "class folders train/ + val/ (+ tune/ for choosing settings) or torchvision's flowers-102/",
        "`make data` links data/flowers102 -> ../shared/datasets/flowers102; or torchvision: "
        "data.download: true (internet), or flowers-102/ under the root",
        _flowers102_loader,
    ),
    "pets": DatasetSpec(
        "Oxford-IIIT Pets (paper), 37 breeds; trainval/test",
        "torchvision: data.download: true (internet), or oxford-iiit-pet/ under the root",
        _torchvision_loader("pets"),
    ),
    "food101": DatasetSpec(
        "Food-101 (paper), 101 dishes; train/test",
        "torchvision: data.download: true (internet), or food-101/ under the root",
        _torchvision_loader("food101"),
    ),
    "stanford_dogs": DatasetSpec(
        "Stanford Dogs (paper), 120 breeds; official train/test lists",
        "extract images.tar and lists.tar from vision.stanford.edu/aditya86/ImageNetDogs into the root",
        _load_stanford_dogs,
    ),
    "awa2": DatasetSpec(
        "Animals with Attributes 2 (paper), 50 classes; seeded per-class split (split_fraction)",
        "extract AwA2-data.zip from cvml.ist.ac.at/AwA2 into the root",
        _load_awa2,
    ),
    "folder": DatasetSpec(
        "your own class folders: train/ + test/ (or val/), or one folder split per class",
        "set data.root to the folder (or give the folder path as data.name)",
        _load_class_folders,
    ),
    "synthetic": DatasetSpec(
        "3 generated classes (square, disc, bar) for tests; 12 train / 6 test per class",
        "generated, nothing to obtain",
        _load_synthetic,
        needs_root=False,
    ),
}


def describe_datasets() -> str:
    """One line per registered dataset: name, description, how to obtain it."""
    return "\n".join(f"{n:14s} {s.description} [{s.obtain}]" for n, s in DATASETS.items())


def _looks_like_path(name: str) -> bool:
    return any(ch in name for ch in "/\\") or name.startswith((".", "~"))


def _resolve(cfg: DataConfig) -> tuple[str, DatasetSpec, Path | None]:
    """(bundle name, spec, root) of ``cfg``; the root is None for generated sets."""
    if cfg.name in DATASETS:
        spec = DATASETS[cfg.name]
        if cfg.name == "folder":
            if cfg.root is None:
                raise ValueError("data.name 'folder' needs data.root: the folder of class folders")
            root = Path(cfg.root).expanduser()
            return root.name, spec, root
        if not spec.needs_root:
            return cfg.name, spec, None
        root = Path(cfg.root).expanduser() if cfg.root else data_root() / cfg.name
        return cfg.name, spec, root
    path = Path(cfg.name).expanduser()
    if path.is_dir():
        # The folder's base name, not its path, so the fingerprint is the same elsewhere.
        return path.name, DATASETS["folder"], path
    if _looks_like_path(cfg.name):
        raise DatasetNotFoundError(
            f"dataset folder {path} does not exist (data.name is read as a path to class folders)"
        )
    raise ValueError(
        f"unknown dataset {cfg.name!r}; registered: {', '.join(DATASETS)} "
        "(or give a path to a folder of class folders)"
    )


def load_dataset(cfg: DataConfig) -> DatasetBundle:
    """Load the dataset ``cfg`` names, apply hold-out then subsampling.

    ``cfg.name`` is a key of :data:`DATASETS`, or a path to class folders.
    Raises :class:`DatasetNotFoundError` (where it looked, how to get it),
    ValueError (unknown name, unknown holdout class, inconsistent folders) or
    :class:`DatasetIntegrityError` (copy differs from its MANIFEST.tsv).
    """
    if cfg.image_size < 1:
        raise ValueError(f"image_size must be >= 1, got {cfg.image_size}")
    name, spec, root = _resolve(cfg)
    splits = spec.loader(cfg, root)
    classes = splits.classes
    held = _validate_holdout(cfg.holdout_classes, classes)
    keep = [c for c in classes if c not in held]
    if len(keep) < 2:
        where = f" at {root}" if root is not None else ""
        extra = f" after holding out {sorted(held)} (data.holdout_classes)" if held else ""
        raise ValueError(
            f"dataset {name!r}{where} has {len(keep)} class(es) {keep}{extra}; "
            "a classifier needs at least 2 class folders"
        )
    heldout_classes = [c for c in classes if c in held]
    # Validation is carved from the whole training pool before the cap, so the
    # capped training set never contains a validation image (tuning only; test is
    # used once per reported number).
    if splits.val is not None:
        # the set's own validation split (tune/): nothing of train or test is used for tuning
        train_pool, val_pool = _restrict(splits.train, keep), _restrict(splits.val, keep)
    else:
        train_pool, val_pool = carve_validation(_restrict(splits.train, keep), cfg.val_fraction, cfg.seed)
    train = subsample_per_class(train_pool, cfg.max_per_class, cfg.seed, "train")
    val = (
        subsample_per_class(val_pool, cfg.max_val_per_class, cfg.seed, "val")
        if val_pool is not None else None
    )
    test = subsample_per_class(
        _restrict(splits.test, keep), cfg.max_test_per_class, cfg.seed, "test"
    )
    heldout = None
    if heldout_classes:
        heldout = subsample_per_class(
            _restrict(splits.test, heldout_classes), cfg.max_test_per_class, cfg.seed, "test"
        )
    return DatasetBundle(
        name=name,
        train=train,
        test=test,
        val=val,
        classes=keep,
        image_size=cfg.image_size,
        heldout=heldout,
        heldout_classes=heldout_classes,
        root=str(root.resolve()) if root is not None else None,
        human_names=splits.human_names,
    )
