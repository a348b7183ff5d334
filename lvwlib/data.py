"""Image datasets: one entry point, :func:`load_dataset`, for every source.

Every dataset yields ``(image, label)`` with ``image`` a float32 tensor
[3, S, S] in [0, 1] (S = ``DataConfig.image_size``; images are resized to
S x S without keeping the aspect ratio, as the paper's "resize to 224x224") and
``label`` an int indexing the dataset's ``classes``. No normalisation and no
augmentation happen here: the backbone wrapper normalises, and the random
horizontal flip is applied to cached features (see :mod:`lvwlib.batches`).

Sources (the registry :data:`DATASETS`):

- offline class-folder sets ``imagenette``, ``imagewoof``, ``flowers17``
  (``../shared/datasets``, linked to ``data/<name>`` by ``make data``), checked
  against their ``MANIFEST.tsv`` (see :func:`verify_manifest`);
- the paper's sets through torchvision: ``stl10``, ``flowers102``, ``pets``,
  ``food101`` (downloaded only when ``DataConfig.download`` is true);
- ``stanford_dogs`` and ``awa2`` from their official archives' layouts;
- ``folder``: class folders of the user's own (``data.root``, or a directory
  path given as ``data.name``);
- ``synthetic``: a tiny generated set for tests.

Options applied to all of them, after loading: ``holdout_classes`` (removed
from train and test; their test images form ``DatasetBundle.heldout``), then
``max_per_class`` / ``max_test_per_class`` (seeded per-class subsampling that
keeps the sorted order).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from .config import DataConfig
from .paths import cache_root, data_root

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
MANIFEST_NAME = "MANIFEST.tsv"
HUMAN_NAMES_FILE = "classes.json"
SKIP_HASH_ENV = "LVW_SKIP_HASH"


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is not where it was looked for; the message says where and how to get it."""


class CorruptImageError(ValueError):
    """An image file cannot be decoded; the message names the file."""


class DatasetIntegrityError(ValueError):
    """A dataset copy does not match its MANIFEST.tsv (or its own list files)."""


# --------------------------------------------------------------------------- images


def pil_to_tensor01(img: Image.Image, image_size: int) -> torch.Tensor:
    """RGB PIL image -> float32 tensor [3, S, S] in [0, 1], resized to S x S (aspect not kept)."""
    img = img.convert("RGB")
    if img.size != (image_size, image_size):
        # PIL's bilinear resize widens its kernel when shrinking (antialiasing),
        # as torchvision's Resize on PIL images does.
        img = img.resize((image_size, image_size), Image.Resampling.BILINEAR)
    arr = np.array(img, dtype=np.uint8)  # [S, S, 3], a writable copy
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous().to(torch.float32).div_(255.0)


def load_image(path: str | Path, image_size: int) -> torch.Tensor:
    """Read an image file -> float32 tensor [3, S, S] in [0, 1].

    Raises :class:`CorruptImageError` naming ``path`` when the file cannot be
    read or decoded (truncated files included: ``convert`` forces a full decode).
    """
    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise CorruptImageError(f"cannot read image {path}: {err}") from err
    return pil_to_tensor01(rgb, image_size)


# --------------------------------------------------------------------------- datasets


class LabelledImageDataset(Dataset):
    """Common interface of the datasets returned by :func:`load_dataset`.

    Items are ``(image float32 [3, S, S] in [0, 1], label int)``. Attributes:
    ``labels`` (one int per item), ``ids`` (stable string per item, unique within
    the split), ``classes`` (names; ``labels`` index into them), ``image_size`` (S).
    """

    labels: list[int]
    ids: list[str]
    classes: list[str]
    image_size: int

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        raise NotImplementedError

    def subset(
        self, positions: Sequence[int], labels: Sequence[int], classes: Sequence[str]
    ) -> LabelledImageDataset:
        """Items at ``positions`` relabelled with ``labels`` (indexing the new ``classes``)."""
        raise NotImplementedError

    def fingerprint_items(self) -> list[Any]:
        """JSON-able description of the selected images, for :meth:`DatasetBundle.fingerprint`."""
        return [self.ids, self.labels]


def _check_labels(labels: Sequence[int], n_classes: int) -> None:
    bad = [lab for lab in labels if not 0 <= lab < n_classes]
    if bad:
        raise ValueError(f"label {bad[0]} out of range for {n_classes} classes")


class ImageFileDataset(LabelledImageDataset):
    """Images read from files: items ``(float32 [3, S, S] in [0, 1], label)``.

    ``samples`` are ``(path, label)`` pairs; ``ids`` are the paths relative to
    ``root`` (POSIX separators) when given, else the paths as given. An
    unreadable file raises :class:`CorruptImageError` naming it, on access.
    """

    def __init__(
        self,
        samples: Sequence[tuple[str | Path, int]],
        classes: Sequence[str],
        image_size: int,
        root: str | Path | None = None,
    ) -> None:
        self.paths = [Path(p) for p, _ in samples]
        self.labels = [int(lab) for _, lab in samples]
        self.classes = list(classes)
        self.image_size = int(image_size)
        self.root = Path(root) if root is not None else None
        self.ids = [_relative_id(p, self.root) for p in self.paths]
        _check_labels(self.labels, len(self.classes))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return load_image(self.paths[index], self.image_size), self.labels[index]

    def subset(
        self, positions: Sequence[int], labels: Sequence[int], classes: Sequence[str]
    ) -> ImageFileDataset:
        samples = [(self.paths[p], lab) for p, lab in zip(positions, labels, strict=True)]
        return ImageFileDataset(samples, classes, self.image_size, self.root)

    def fingerprint_items(self) -> list[Any]:
        # Sizes make a replaced file (same name, new content) change the key cheaply.
        return [self.ids, self.labels, [p.stat().st_size for p in self.paths]]


def _relative_id(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            pass
    return path.as_posix()


class TensorImageDataset(LabelledImageDataset):
    """In-memory images: ``images`` [N, 3, H, W], uint8 (0..255) or float (0..1).

    Items are ``(float32 [3, S, S] in [0, 1], label)``, resized bilinearly
    (antialiased) when H, W differ from S. ``masks`` [N, H, W] bool, optional,
    marks each image's object (the synthetic set's shape), for attention checks.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: Sequence[int],
        classes: Sequence[str],
        image_size: int | None = None,
        ids: Sequence[str] | None = None,
        masks: torch.Tensor | None = None,
    ) -> None:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [N, 3, H, W], got {list(images.shape)}")
        if len(labels) != images.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {len(labels)} labels")
        self.images = images
        self.labels = [int(lab) for lab in labels]
        self.classes = list(classes)
        self.image_size = int(image_size if image_size is not None else images.shape[-1])
        self.ids = list(ids) if ids is not None else [f"{i:06d}" for i in range(len(self.labels))]
        self.masks = masks
        self._content_hash: str | None = None
        _check_labels(self.labels, len(self.classes))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x = self.images[index]
        x = x.to(torch.float32) / 255.0 if x.dtype == torch.uint8 else x.to(torch.float32)
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(
                x[None],
                size=(self.image_size, self.image_size),
                mode="bilinear",
                align_corners=False,
                antialias=True,
            )[0].clamp_(0.0, 1.0)
        return x, self.labels[index]

    def subset(
        self, positions: Sequence[int], labels: Sequence[int], classes: Sequence[str]
    ) -> TensorImageDataset:
        idx = torch.as_tensor(list(positions), dtype=torch.long)
        masks = self.masks[idx] if self.masks is not None else None
        ids = [self.ids[p] for p in positions]
        return TensorImageDataset(self.images[idx], labels, classes, self.image_size, ids, masks)

    def fingerprint_items(self) -> list[Any]:
        # The pixels themselves: the images are generated, so ids alone would not
        # change with the seed or with the generator's code.
        if self._content_hash is None:
            data = self.images.detach().cpu().contiguous().numpy().tobytes()
            self._content_hash = hashlib.sha256(data).hexdigest()
        return [self.ids, self.labels, self._content_hash]


class TorchvisionImageDataset(LabelledImageDataset):
    """Thin adapter over a torchvision dataset returning ``(PIL image, target)``.

    Items are ``(float32 [3, S, S] in [0, 1], label)``; ``indices`` select items
    of ``base`` and ``labels`` are given (read from the base's label list, so
    building the adapter decodes no image).
    """

    def __init__(
        self,
        base: Any,
        indices: Sequence[int],
        labels: Sequence[int],
        classes: Sequence[str],
        image_size: int,
        ids: Sequence[str],
    ) -> None:
        self.base = base
        self.indices = [int(i) for i in indices]
        self.labels = [int(lab) for lab in labels]
        self.classes = list(classes)
        self.image_size = int(image_size)
        self.ids = list(ids)
        _check_labels(self.labels, len(self.classes))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        try:
            img, _ = self.base[self.indices[index]]
        except (OSError, SyntaxError, ValueError) as err:
            raise CorruptImageError(f"cannot read image {self.ids[index]}: {err}") from err
        if isinstance(img, torch.Tensor):  # a base built with a ToTensor-like transform
            img = Image.fromarray(img.mul(255).round().byte().permute(1, 2, 0).numpy())
        return pil_to_tensor01(img, self.image_size), self.labels[index]

    def subset(
        self, positions: Sequence[int], labels: Sequence[int], classes: Sequence[str]
    ) -> TorchvisionImageDataset:
        return TorchvisionImageDataset(
            self.base,
            [self.indices[p] for p in positions],
            labels,
            classes,
            self.image_size,
            [self.ids[p] for p in positions],
        )


# --------------------------------------------------------------------------- bundle


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
        }
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def summary(self) -> str:
        """One line: name, classes and split sizes."""
        held = f", {len(self.heldout)} held-out test images" if self.heldout is not None else ""
        return (
            f"{self.name}: {len(self.classes)} classes, {len(self.train)} train, "
            f"{len(self.test)} test images{held}, {self.image_size}px"
        )


def _fingerprint_items(ds: Dataset) -> list[Any]:
    if isinstance(ds, LabelledImageDataset):
        return ds.fingerprint_items()
    return [list(getattr(ds, "ids", [])), list(getattr(ds, "labels", []))]


# --------------------------------------------------------------------------- manifest


@dataclass(frozen=True)
class ManifestEntry:
    path: str  # relative, POSIX separators
    size: int  # bytes
    sha256: str  # hex digest


def read_manifest(path: str | Path) -> list[ManifestEntry]:
    """Parse a ``MANIFEST.tsv``: lines ``relative/path<TAB>size<TAB>sha256``."""
    entries = []
    for lineno, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 3 or not parts[1].isdigit():
            raise DatasetIntegrityError(
                f"{path}:{lineno}: expected 'relative/path<TAB>size<TAB>sha256', got {line!r}"
            )
        entries.append(ManifestEntry(parts[0], int(parts[1]), parts[2].strip().lower()))
    return entries


def _sha256_file(path: Path, progress: Any = None) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            if progress is not None:
                progress.update(len(chunk))
    return digest.hexdigest()


def _skip_hash_requested() -> bool:
    return os.environ.get(SKIP_HASH_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def verify_manifest(
    root: str | Path, *, check_hash: bool | None = None, progress: bool = True
) -> list[ManifestEntry]:
    """Check a dataset copy against ``root/MANIFEST.tsv``; return its entries.

    Every listed file must exist with the listed size (checked on every call:
    one ``stat`` per file). The sha256 of every file is checked once: an OK
    verdict is cached as json under ``cache_root()/"manifest"``, keyed by the
    resolved ``root`` and the sha256 of the manifest. The verdict also records
    the files' sizes and modification times, so a file touched since then is
    hashed again. ``check_hash=False``, or ``LVW_SKIP_HASH=1`` when
    ``check_hash`` is None, skips the hashes (sizes are still checked).
    Raises :class:`DatasetIntegrityError` naming the first bad files.
    """
    root = Path(root).resolve()
    manifest = root / MANIFEST_NAME
    if not manifest.is_file():
        raise DatasetNotFoundError(f"no {MANIFEST_NAME} in {root}")
    entries = read_manifest(manifest)
    bad, stats = _check_sizes(root, entries)
    if bad:
        raise DatasetIntegrityError(_bad_files_message(root, bad, len(entries)))
    if check_hash is None:
        check_hash = not _skip_hash_requested()
    if not check_hash:
        return entries
    manifest_sha = _sha256_file(manifest)
    verdict_file = _verdict_path(root, manifest_sha)
    signature = _stat_signature(entries, stats)
    if _read_verdict(verdict_file) == signature:
        return entries
    bad = _check_hashes(root, entries, progress)
    if bad:
        raise DatasetIntegrityError(_bad_files_message(root, bad, len(entries)))
    _write_verdict(verdict_file, root, manifest_sha, signature, entries)
    return entries


def _check_sizes(
    root: Path, entries: Sequence[ManifestEntry]
) -> tuple[list[str], list[tuple[int, int]]]:
    """Problems (``"path (why)"``) and each file's (size, mtime_ns)."""
    bad, stats = [], []
    for e in entries:
        try:
            st = (root / e.path).stat()
        except OSError:
            bad.append(f"{e.path} (missing)")
            stats.append((-1, -1))
            continue
        if st.st_size != e.size:
            bad.append(f"{e.path} (size {st.st_size}, expected {e.size})")
        stats.append((st.st_size, st.st_mtime_ns))
    return bad, stats


def _check_hashes(root: Path, entries: Sequence[ManifestEntry], progress: bool) -> list[str]:
    from tqdm.auto import tqdm

    bad = []
    total = sum(e.size for e in entries)
    with tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        desc=f"sha256 {root.name}",
        disable=not progress,
        leave=False,
    ) as bar:
        for e in entries:
            if _sha256_file(root / e.path, bar) != e.sha256:
                bad.append(f"{e.path} (sha256 differs)")
    return bad


def _bad_files_message(root: Path, bad: Sequence[str], n_files: int) -> str:
    shown = ", ".join(bad[:5]) + (", ..." if len(bad) > 5 else "")
    return (
        f"{root} does not match its {MANIFEST_NAME}: {len(bad)} of {n_files} files bad, "
        f"first: {shown}. The copy is incomplete or changed: copy it again from its source."
    )


def _stat_signature(entries: Sequence[ManifestEntry], stats: Sequence[tuple[int, int]]) -> str:
    digest = hashlib.sha256()
    for e, (size, mtime) in zip(entries, stats, strict=True):
        digest.update(f"{e.path}\t{size}\t{mtime}\n".encode())
    return digest.hexdigest()


def _verdict_path(root: Path, manifest_sha: str) -> Path:
    key = hashlib.sha256(f"{root}\n{manifest_sha}".encode()).hexdigest()[:32]
    return cache_root() / "manifest" / f"{key}.json"


def _read_verdict(path: Path) -> str | None:
    """The stat signature of a cached OK verdict, or None."""
    try:
        verdict = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return verdict.get("stat_signature") if verdict.get("ok") else None


def _write_verdict(
    path: Path, root: Path, manifest_sha: str, signature: str, entries: Sequence[ManifestEntry]
) -> None:
    verdict = {
        "ok": True,
        "root": str(root),
        "manifest_sha256": manifest_sha,
        "files": len(entries),
        "bytes": sum(e.size for e in entries),
        "stat_signature": signature,
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(verdict, indent=1))
        tmp.replace(path)  # atomic: a concurrent reader never sees half a file
    except OSError as err:  # a read-only cache only costs a re-hash next time
        warnings.warn(f"could not cache the manifest verdict at {path}: {err}", stacklevel=3)


# --------------------------------------------------------------------------- class folders


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


@dataclass
class _Splits:
    """What a loader returns, before hold-out and subsampling."""

    train: LabelledImageDataset
    test: LabelledImageDataset
    classes: list[str]
    human_names: dict[str, str]


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
    train_files = scan_class_folders(train_dir)
    test_files = scan_class_folders(test_dir)
    _check_same_classes(train_files, test_files, train_dir, test_dir)
    classes = sorted(train_files)
    return _Splits(
        _file_dataset(train_files, classes, image_size, root),
        _file_dataset(test_files, classes, image_size, root),
        classes,
        _read_human_names(root, classes),
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
    _check_manifest_if_any(root, splits.train.ids + splits.test.ids, manifest_expected)
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


_TORCHVISION_SETS = {
    "stl10": _TorchvisionSet("STL10", "train", "test", "stl10_binary"),
    # The paper trains on Flowers102's train split and tests on its val split.
    "flowers102": _TorchvisionSet("Flowers102", "train", "val", "flowers-102"),
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
        return _Splits(datasets[spec.train_split], datasets[spec.test_split], classes, human)

    return load


# --------------------------------------------------------------------------- synthetic

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


# --------------------------------------------------------------------------- registry


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
        "Oxford 17 flowers, offline stand-in for Oxford 102 Flowers; train/ + test/",
        "`make data` links data/flowers17 -> ../shared/datasets/flowers17",
        _offline_loader("flowers17", "test"),
    ),
    "stl10": DatasetSpec(
        "STL10 (paper), 10 classes, 96 px natively (set image_size: 96 to keep it); train/test",
        "torchvision: data.download: true (internet), or stl10_binary/ under the root",
        _torchvision_loader("stl10"),
    ),
    "flowers102": DatasetSpec(
        "Oxford 102 Flowers (paper): train split for training, val split for testing",
        "torchvision: data.download: true (internet), or flowers-102/ under the root",
        _torchvision_loader("flowers102"),
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


def _validate_holdout(holdout: Iterable[str], classes: Sequence[str]) -> set[str]:
    # A bare string (``holdout_classes: bee`` in yaml) is one class, not its letters.
    held = {holdout} if isinstance(holdout, str) else set(holdout)
    unknown = sorted(held - set(classes))
    if unknown:
        raise ValueError(
            f"unknown holdout class(es) {unknown}; known classes: {', '.join(classes)}"
        )
    if held and held >= set(classes):
        raise ValueError("holdout_classes would remove every class from training")
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
    heldout_classes = [c for c in classes if c in held]
    train = subsample_per_class(_restrict(splits.train, keep), cfg.max_per_class, cfg.seed, "train")
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
        classes=keep,
        image_size=cfg.image_size,
        heldout=heldout,
        heldout_classes=heldout_classes,
        root=str(root.resolve()) if root is not None else None,
        human_names=splits.human_names,
    )
