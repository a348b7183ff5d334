"""A user's own photo folder, as laptops have them, for the end-to-end tests.

:func:`make_user_folder` writes the synthetic shapes (learnable in seconds on tiny params) as
class folders under a path with a space, one class folder named with accents
(``crème_brûlée``), upper-case ``.JPG`` extensions, macOS litter (``.DS_Store``, ``._x.jpg``),
a photo stored sideways with an EXIF Orientation tag, and images far smaller (4 x 4) and far
larger (1600 x 1200) than the 32-pixel input. :func:`snapshot` records every path under a
folder with its size and mtime, so a test can require the folder unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from lvwlib.data import make_synthetic

CLASS_FOLDERS = {"square": "crème_brûlée", "disc": "pizza", "bar": "sushi"}  # synthetic class -> folder
EXIF_ORIENTATION = 0x0112  # the EXIF tag; 6: "rotate 90 clockwise to view"
ROTATE_CW = 6


def save_exif_rotated(pixels: np.ndarray, path: Path) -> None:
    """Store ``pixels`` [H, W, 3] as a camera does a portrait photo: turned, plus Orientation 6.

    A viewer (and :func:`lvwlib.data.images.load_image`) turns it back by 90 degrees clockwise.
    """
    stored = Image.fromarray(pixels).transpose(Image.Transpose.ROTATE_90)  # counter-clockwise
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = ROTATE_CW
    stored.save(path, format="JPEG", quality=95, exif=exif.tobytes())


def make_user_folder(root: Path, per_class: int = 12) -> Path:
    """``root/My Photos/food/<class>/...``: one folder per class (the loader splits train/test)."""
    folder = root / "My Photos" / "food"
    images = make_synthetic(per_class, 32, seed=0, split="train")
    counts: dict[int, int] = {}
    for i in range(len(images)):
        label = images.labels[i]
        k = counts[label] = counts.get(label, 0) + 1
        cls = folder / CLASS_FOLDERS[images.classes[label]]
        cls.mkdir(parents=True, exist_ok=True)
        pixels = images.images[i].permute(1, 2, 0).numpy()
        picture = Image.fromarray(pixels)
        if k == 1:  # far larger than the input size
            picture.resize((1600, 1200), Image.Resampling.BILINEAR).save(cls / f"big_{k:02d}.JPG", quality=90)
        elif k == 2:  # far smaller
            picture.resize((4, 4), Image.Resampling.BILINEAR).save(cls / f"small_{k:02d}.png")
        elif k == 3:
            save_exif_rotated(pixels, cls / f"portrait_{k:02d}.jpg")
        elif k % 2:
            picture.save(cls / f"IMG_{k:04d}.JPG", quality=95)
        else:
            picture.save(cls / f"img_{k:02d}.png")
        (cls / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")  # not an image: must be ignored
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (folder / CLASS_FOLDERS["disc"] / "._IMG_0005.JPG").write_bytes(b"\0\5\26\7AppleDouble")  # macOS copy litter
    return folder


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """``{relative path: (size, mtime_ns)}`` of everything under ``folder`` (folders included)."""
    return {
        str(p.relative_to(folder)): (p.lstat().st_size if p.is_file() else 0, p.lstat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    } | {".": (0, folder.stat().st_mtime_ns)}
