"""Images as tensors, and the datasets that serve them.

:func:`load_image` / :func:`pil_to_tensor01` turn a file or a PIL image into a
float32 tensor [3, S, S] in [0, 1]; :class:`LabelledImageDataset` is the
interface every loader returns, implemented over files
(:class:`ImageFileDataset`), in-memory tensors (:class:`TensorImageDataset`)
and torchvision datasets (:class:`TorchvisionImageDataset`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch.utils.data import Dataset

from .errors import CorruptImageError

ALPHA_BACKGROUND = (255, 255, 255)  # transparent pixels are shown over white, as viewers do


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> an RGB image with the colours a viewer shows.

    Grayscale (L) is replicated; 16-bit grayscale (I;16*, I) is scaled from
    0..65535 to 0..255 (``convert`` would clip it to 255, i.e. white); CMYK
    uses PIL's conversion (Adobe-inverted JPEGs are handled by its decoder);
    palette images are expanded; transparency (RGBA, LA, PA, a palette or RGB
    with a transparent colour) is composited over :data:`ALPHA_BACKGROUND`,
    not dropped (dropping it shows the arbitrary colours stored under alpha 0).
    """
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        if img.mode == "I" and arr.max(initial=0) <= 255:
            scaled = arr  # an 8-bit image stored in 32-bit ints
        else:
            scaled = arr / 65535.0 * 255.0
        gray = Image.fromarray(np.clip(np.round(scaled), 0, 255).astype(np.uint8), mode="L")
        return gray.convert("RGB")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        scale = 255.0 if arr.max(initial=0) <= 1.0 else 1.0  # a [0, 1] float image, else 0..255
        return Image.fromarray(np.clip(np.round(arr * scale), 0, 255).astype(np.uint8), mode="L").convert("RGB")
    has_alpha = img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in img.info
    if has_alpha:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*ALPHA_BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def pil_to_tensor01(img: Image.Image, image_size: int) -> torch.Tensor:
    """PIL image of any mode -> float32 tensor [3, S, S] in [0, 1], resized to S x S (aspect not kept).

    Modes are converted by :func:`to_rgb` (grayscale, 16-bit, CMYK, palette, alpha).
    """
    img = to_rgb(img)
    if img.size != (image_size, image_size):
        # PIL's bilinear resize widens its kernel when shrinking (antialiasing),
        # as torchvision's Resize on PIL images does.
        img = img.resize((image_size, image_size), Image.Resampling.BILINEAR)
    # In numpy, single-threaded: torch's multi-threaded copy of one small image costs ~10x
    # more CPU on a busy 2-core machine. Same float32 values (x / 255 in float32).
    arr = np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).astype(np.float32, order="C")
    arr /= np.float32(255.0)
    return torch.from_numpy(arr)


def load_image(path: str | Path, image_size: int) -> torch.Tensor:
    """Read an image file -> float32 tensor [3, S, S] in [0, 1].

    The EXIF orientation (photos from phones and cameras) is applied, as a viewer does.
    Raises :class:`CorruptImageError` naming ``path`` when the file cannot be
    read or decoded (truncated files included: ``convert`` forces a full decode).
    """
    try:
        with Image.open(path) as img:
            img.load()  # a full decode here, so a truncated file fails inside this try
            # A phone stores a portrait photo as landscape pixels plus an EXIF Orientation tag;
            # viewers rotate it, so must we (else the model sees it on its side).
            ImageOps.exif_transpose(img, in_place=True)
            rgb = to_rgb(img)
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
