"""The paper's datasets: Stanford Dogs and AwA2 from their official archives'
layouts, and STL10, Flowers102, Pets and Food101 through torchvision.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lvwlib.core.config import DataConfig

from .errors import DatasetIntegrityError, DatasetNotFoundError
from .folders import _check_same_classes, _file_dataset, _offline_loader, scan_class_folders
from .images import ImageFileDataset, TorchvisionImageDataset, _relative_id
from .splits import _Splits, split_per_class, subsample_per_class

# --------------------------------------------------------------------------- official layouts


def _mat_strings(value: Any) -> list[str]:
    """Strings of a loadmat cell array / char matrix, whatever its nesting."""
    out = []
    for item in np.asarray(value, dtype=object).ravel():
        while isinstance(item, np.ndarray):  # cells come back as nested 1-element arrays
            item = item.ravel()[0] if item.size else ""
        out.append(str(item).strip())
    return out


def _read_dogs_list(path: Path) -> tuple[list[str], list[int]]:
    import scipy.io

    mat = scipy.io.loadmat(str(path))
    if "file_list" not in mat or "labels" not in mat:
        raise DatasetIntegrityError(f"{path}: expected variables 'file_list' and 'labels'")
    files = _mat_strings(mat["file_list"])
    labels = [int(v) for v in np.asarray(mat["labels"]).ravel()]
    if len(files) != len(labels):
        raise DatasetIntegrityError(f"{path}: {len(files)} files but {len(labels)} labels")
    return files, labels


def _load_stanford_dogs(cfg: DataConfig, root: Path) -> _Splits:
    """Official Stanford Dogs layout: ``Images/<wnid-breed>/*.jpg``, ``{train,test}_list.mat``.

    Labels in the .mat files are 1-based; the class of label k is the breed
    folder of its files (checked to be consistent).
    """
    needed = [root / "Images", root / "train_list.mat", root / "test_list.mat"]
    missing = [p for p in needed if not p.exists()]
    if missing:
        raise DatasetNotFoundError(
            f"Stanford Dogs not found at {root} (missing: {', '.join(map(str, missing))}). "
            "Download images.tar and lists.tar from http://vision.stanford.edu/aditya86/"
            f"ImageNetDogs/ and extract both into {root}"
        )
    lists = {s: _read_dogs_list(root / f"{s}_list.mat") for s in ("train", "test")}
    folder_of: dict[int, str] = {}
    for files, labels in lists.values():
        for f, lab in zip(files, labels, strict=True):
            folder = f.split("/", 1)[0]
            if folder_of.setdefault(lab, folder) != folder:
                raise DatasetIntegrityError(f"label {lab} names both {folder_of[lab]} and {folder}")
    n = max(folder_of)
    if min(folder_of) != 1 or len(folder_of) != n:
        raise DatasetIntegrityError(f"labels in {root}/*_list.mat are not 1..{n}")
    classes = [folder_of[k] for k in range(1, n + 1)]
    datasets = {}
    for split, (files, labels) in lists.items():
        paths = [root / "Images" / f for f in files]
        absent = [p for p in paths if not p.is_file()]
        if absent:
            raise DatasetIntegrityError(
                f"{len(absent)} image(s) of {split}_list.mat missing under {root}/Images, "
                f"first: {absent[0]}"
            )
        samples = sorted(
            zip(paths, [lab - 1 for lab in labels], strict=True), key=lambda s: (s[1], s[0])
        )
        datasets[split] = ImageFileDataset(samples, classes, cfg.image_size, root)
    human = {c: c.split("-", 1)[-1].replace("_", " ") for c in classes}
    return _Splits(datasets["train"], datasets["test"], classes, human)


def _read_awa_classes(path: Path) -> list[str]:
    """``classes.txt`` lines like ``  1\\tantelope`` -> names in file order."""
    names = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if parts:
            names.append(parts[-1])
    return names


def _load_awa2(cfg: DataConfig, root: Path) -> _Splits:
    """Animals with Attributes 2: ``[Animals_with_Attributes2/]JPEGImages/<class>/*.jpg``.

    AwA2 has no standard image split for classification, so every class is
    split with its own seeded shuffle (``cfg.seed``), ``cfg.split_fraction`` of
    its images going to test. Labels follow ``classes.txt`` (the official
    order) when present, else the sorted folder names.
    """
    base = root / "Animals_with_Attributes2"
    base = base if base.is_dir() else root
    jpegs = base / "JPEGImages"
    if not jpegs.is_dir():
        raise DatasetNotFoundError(
            f"AwA2 not found at {root} (looked for {root}/Animals_with_Attributes2/JPEGImages "
            f"and {root}/JPEGImages). Download AwA2-data.zip from "
            f"https://cvml.ist.ac.at/AwA2/ and extract it into {root}"
        )
    files = scan_class_folders(jpegs)
    classes_txt = base / "classes.txt"
    if classes_txt.is_file():
        classes = _read_awa_classes(classes_txt)
        _check_same_classes(classes, files, classes_txt, jpegs)
    else:
        classes = sorted(files)
    train_files, test_files = split_per_class(files, cfg.split_fraction, cfg.seed)
    return _Splits(
        _file_dataset(train_files, classes, cfg.image_size, root),
        _file_dataset(test_files, classes, cfg.image_size, root),
        classes,
        {c: c.replace("+", " ") for c in classes},
    )


# --------------------------------------------------------------------------- torchvision


@dataclass(frozen=True)
class _TorchvisionSet:
    cls: str  # torchvision.datasets class name
    train_split: str
    test_split: str
    subdir: str  # folder torchvision creates under root
    tune_split: str | None = None  # a split never trained or tested on, for the validation images
    tune_per_class: int = 10  # validation images drawn (seeded) per class from tune_split


_TORCHVISION_SETS = {
    "stl10": _TorchvisionSet("STL10", "train", "test", "stl10_binary"),
    # The paper trains on Flowers102's train split and tests on its val split.
    # Validation: 10 per class from the official test split (as the offline copy's tune/).
    "flowers102": _TorchvisionSet("Flowers102", "train", "val", "flowers-102", tune_split="test"),
    "pets": _TorchvisionSet("OxfordIIITPet", "trainval", "test", "oxford-iiit-pet"),
    "food101": _TorchvisionSet("Food101", "train", "test", "food-101"),
}


def _tv_labels(base: Any) -> list[int]:
    """Labels without decoding images (torchvision keeps them in one of these)."""
    for attr in ("labels", "_labels", "targets"):
        values = getattr(base, attr, None)
        if values is not None:
            return [int(v) for v in values]
    return [int(base[i][1]) for i in range(len(base))]


def _tv_ids(base: Any, root: Path, split: str) -> list[str]:
    # File paths where torchvision keeps them (Flowers102/Food101, Pets), else positions.
    for attr in ("_image_files", "_images"):
        files = getattr(base, attr, None)
        if files is not None and len(files) == len(base):
            return [_relative_id(Path(f), root) for f in files]
    return [f"{split}/{i:06d}" for i in range(len(base))]


def _tv_missing(
    name: str, root: Path, spec: _TorchvisionSet, cause: str = ""
) -> DatasetNotFoundError:
    because = f" ({cause})" if cause else ""
    return DatasetNotFoundError(
        f"{name} not found under {root}{because}: looked for the torchvision layout "
        f"{root / spec.subdir}. Set data.download: true on a machine with internet, or place "
        f"the torchvision layout at {root / spec.subdir} (or point data.root / LVW_DATA elsewhere)"
    )


def _torchvision_loader(name: str) -> Callable[[DataConfig, Path], _Splits]:
    spec = _TORCHVISION_SETS[name]

    def load(cfg: DataConfig, root: Path) -> _Splits:
        # Checked before importing torchvision: fast, and never a network attempt.
        if not cfg.download and not (root / spec.subdir).exists():
            raise _tv_missing(name, root, spec)
        import torchvision.datasets

        ctor = getattr(torchvision.datasets, spec.cls)
        if cfg.download:
            root.mkdir(parents=True, exist_ok=True)
        try:
            bases = {
                spec.train_split: ctor(str(root), split=spec.train_split, download=cfg.download),
                spec.test_split: ctor(str(root), split=spec.test_split, download=False),
            }
        except (RuntimeError, OSError, ValueError) as err:  # offline download, bad layout
            raise _tv_missing(name, root, spec, f"{type(err).__name__}: {err}") from err
        labels = {s: _tv_labels(b) for s, b in bases.items()}
        n_classes = max(max(v) for v in labels.values()) + 1
        classes = list(getattr(bases[spec.train_split], "classes", None) or [])
        if len(classes) != n_classes:
            classes = [f"class_{k + 1:03d}" for k in range(n_classes)]
        datasets = {}
        for split, base in bases.items():
            ids = _tv_ids(base, root, split)
            datasets[split] = TorchvisionImageDataset(
                base, range(len(base)), labels[split], classes, cfg.image_size, ids
            )
        human = {c: c.replace("_", " ") for c in classes}
        val = None
        if spec.tune_split is not None:
            base = ctor(str(root), split=spec.tune_split, download=False)
            tune = TorchvisionImageDataset(
                base, range(len(base)), _tv_labels(base), classes, cfg.image_size, _tv_ids(base, root, spec.tune_split)
            )
            val = subsample_per_class(tune, spec.tune_per_class, 0, "tune")
        return _Splits(datasets[spec.train_split], datasets[spec.test_split], classes, human, val)

    return load


def _flowers102_loader(cfg: DataConfig, root: Path) -> _Splits:
    """Oxford 102 Flowers from either layout: class folders (train/, val/, tune/) or torchvision's.

    Both give the official split: train on the official train split, test on the
    official validation split (the paper's protocol); validation is 10 images per
    class from the official test split (the offline copy's tune/; under torchvision
    drawn with this package's seeded sampler, so the two layouts' validation images
    may differ, never their train or test images).
    """
    if (root / "train").is_dir() and (root / "val").is_dir():
        return _offline_loader("flowers102", "val")(cfg, root)
    try:
        return _torchvision_loader("flowers102")(cfg, root)
    except DatasetNotFoundError as err:
        raise DatasetNotFoundError(
            f"flowers102 not found at {root}: expected class folders train/ + val/ (+ tune/) there "
            f"(`make data` links ../shared/datasets/flowers102), or torchvision's layout "
            f"{root / 'flowers-102'} (data.download: true with internet). {err}"
        ) from err
