"""Class-folder datasets: scanning ``<class>/<image>`` folders, the user's own
folders (``folder``) and the offline sets of ``../shared/datasets``.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from lvwlib.core.config import DataConfig

from .errors import DatasetNotFoundError
from .images import ImageFileDataset
from .manifest import MANIFEST_NAME, verify_manifest
from .splits import _Splits, split_per_class

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
HUMAN_NAMES_FILE = "classes.json"
TUNE_SPLIT = "tune"  # a dataset's own validation split (flowers102: drawn from the official test split)


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def _list_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursive, symlinks followed), sorted by relative path."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found.extend(Path(dirpath) / f for f in filenames if _is_image(Path(f)))
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def scan_class_folders(split_dir: Path) -> dict[str, list[Path]]:
    """``{class folder name: sorted image paths}`` for the class folders of ``split_dir``.

    Files of other extensions are ignored; a class folder without images raises
    ValueError (a silently missing class would shift every later label).
    """
    class_dirs = sorted(d for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise ValueError(f"{split_dir} has no class folders (expected {split_dir}/<class>/<image>)")
    files = {}
    for d in class_dirs:
        images = _list_images(d)
        if not images:
            raise ValueError(
                f"class folder {d} holds no images "
                f"(accepted extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})"
            )
        files[d.name] = images
    return files


def _check_same_classes(
    train: Iterable[str], test: Iterable[str], train_dir: Path, test_dir: Path
) -> None:
    train_set, test_set = set(train), set(test)
    if train_set == test_set:
        return
    what = "wrong number of classes" if len(train_set) != len(test_set) else "different class names"
    raise ValueError(
        f"class folders of {train_dir} and {test_dir} differ ({what}: {len(train_set)} vs "
        f"{len(test_set)}); only in {train_dir.name}/: {sorted(train_set - test_set)}; "
        f"only in {test_dir.name}/: {sorted(test_set - train_set)}"
    )


def _file_dataset(
    files: dict[str, list[Path]], classes: Sequence[str], image_size: int, root: Path
) -> ImageFileDataset:
    """Samples ordered by class (label order), then by path."""
    samples = [(p, label) for label, c in enumerate(classes) for p in files.get(c, [])]
    return ImageFileDataset(samples, classes, image_size, root)


def _read_human_names(root: Path, classes: Sequence[str]) -> dict[str, str]:
    names: dict[str, str] = {}
    path = root / HUMAN_NAMES_FILE
    if path.is_file():
        names = {str(k): str(v) for k, v in json.loads(path.read_text()).items()}
    return {c: names.get(c, c) for c in classes}


def _check_manifest_if_any(root: Path, image_ids: Iterable[str], expected: bool) -> None:
    if not (root / MANIFEST_NAME).is_file():
        if expected:
            warnings.warn(f"{root} has no {MANIFEST_NAME}: the copy is not verified", stacklevel=4)
        return
    listed = {e.path for e in verify_manifest(root)}
    extra = [i for i in image_ids if i not in listed]
    if extra:
        warnings.warn(
            f"{len(extra)} image(s) under {root} are not in {MANIFEST_NAME} and are loaded "
            f"unverified (first: {extra[0]})",
            stacklevel=4,
        )


def _load_split_folders(root: Path, train_dir: Path, test_dir: Path, image_size: int) -> _Splits:
    """``train/`` and test class folders, plus ``tune/`` (the set's own validation split) when present."""
    train_files = scan_class_folders(train_dir)
    test_files = scan_class_folders(test_dir)
    _check_same_classes(train_files, test_files, train_dir, test_dir)
    classes = sorted(train_files)
    tune_dir = root / TUNE_SPLIT
    val = None
    if tune_dir.is_dir():
        tune_files = scan_class_folders(tune_dir)
        _check_same_classes(train_files, tune_files, train_dir, tune_dir)
        val = _file_dataset(tune_files, classes, image_size, root)
    return _Splits(
        _file_dataset(train_files, classes, image_size, root),
        _file_dataset(test_files, classes, image_size, root),
        classes,
        _read_human_names(root, classes),
        val,
    )


def _load_class_folders(cfg: DataConfig, root: Path, *, manifest_expected: bool = False) -> _Splits:
    """``root/train`` + ``root/test`` (or ``root/val``) class folders, or one folder split per class."""
    if not root.is_dir():
        raise DatasetNotFoundError(
            f"no dataset folder at {root}: expected class folders there "
            f"(train/<class>/*.jpg and test/<class>/*.jpg, or <class>/*.jpg)"
        )
    train_dir = root / "train"
    if train_dir.is_dir():
        test_dir = next((root / s for s in ("test", "val") if (root / s).is_dir()), None)
        if test_dir is None:
            raise ValueError(f"{root} has train/ but neither test/ nor val/")
        splits = _load_split_folders(root, train_dir, test_dir, cfg.image_size)
    else:
        files = scan_class_folders(root)
        train_files, test_files = split_per_class(files, cfg.split_fraction, cfg.seed)
        classes = sorted(files)
        splits = _Splits(
            _file_dataset(train_files, classes, cfg.image_size, root),
            _file_dataset(test_files, classes, cfg.image_size, root),
            classes,
            _read_human_names(root, classes),
        )
    val_ids = splits.val.ids if splits.val is not None else []
    _check_manifest_if_any(root, splits.train.ids + splits.test.ids + val_ids, manifest_expected)
    return splits


def _offline_loader(name: str, test_split: str) -> Callable[[DataConfig, Path], _Splits]:
    """Loader of a set from ../shared/datasets: ``train/`` and ``<test_split>/`` class folders."""

    def load(cfg: DataConfig, root: Path) -> _Splits:
        if not (root / "train").is_dir() or not (root / test_split).is_dir():
            raise DatasetNotFoundError(
                f"dataset {name!r} not found at {root} (expected train/ and {test_split}/ "
                f"class folders): run `make data` to link ../shared/datasets/{name}, "
                f"or set LVW_DATA to a folder holding {name}/, or set data.root"
            )
        return _load_class_folders(cfg, root, manifest_expected=True)

    return load
