"""Dataset loading: class folders, official layouts, manifest checks, synthetic set.

Every dataset here is built in ``tmp_path`` from a few 8x8 PIL images, so the
whole file runs in seconds without the real datasets.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from lvwlib import data as D
from lvwlib.core.config import DataConfig
from lvwlib.data import manifest
from lvwlib.store.paths import cache_root, data_root, project_root

SHARED_FLOWERS17 = Path("/work/shared/datasets/flowers17")


@pytest.fixture(autouse=True)
def _isolated_roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Data and cache roots in tmp dirs, and hashing on, for every test."""
    monkeypatch.setenv("LVW_DATA", str(tmp_path / "data_root"))
    monkeypatch.setenv("LVW_CACHE", str(tmp_path / "cache_root"))
    monkeypatch.delenv("LVW_SKIP_HASH", raising=False)


def write_image(path: Path, colour: tuple[int, int, int], size: int = 8, fmt: str = "PNG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), colour).save(path, format=fmt)
    return path


def make_class_folders(
    split_dir: Path, counts: dict[str, int], ext: str = ".png", fmt: str = "PNG"
) -> None:
    """``split_dir/<class>/img_<i><ext>``: solid images, colour distinct per class."""
    for k, (cls, n) in enumerate(sorted(counts.items())):
        for i in range(n):
            write_image(split_dir / cls / f"img_{i:02d}{ext}", (40 * k, 10 * i, 200), fmt=fmt)


def make_split_dataset(root: Path, train: int = 3, test: int = 2) -> Path:
    classes = ("ant", "bee", "cat")
    make_class_folders(root / "train", dict.fromkeys(classes, train))
    make_class_folders(root / "test", dict.fromkeys(classes, test))
    return root


def write_manifest(root: Path) -> None:
    lines = []
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != D.MANIFEST_NAME:
            body = p.read_bytes()
            rel = p.relative_to(root).as_posix()
            lines.append(f"{rel}\t{len(body)}\t{hashlib.sha256(body).hexdigest()}")
    (root / D.MANIFEST_NAME).write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------- paths


def test_paths_follow_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert (project_root() / "lvwlib" / "data" / "__init__.py").is_file()
    assert data_root() == tmp_path / "data_root"
    assert cache_root() == tmp_path / "cache_root"
    monkeypatch.delenv("LVW_DATA")
    monkeypatch.delenv("LVW_CACHE")
    assert data_root() == project_root() / "data"
    assert cache_root() == project_root() / "cache"


# --------------------------------------------------------------------------- class folders


def test_class_folders_labels_ids_and_tensors(tmp_path: Path) -> None:
    root = make_split_dataset(tmp_path / "mine")
    (root / "train" / "ant" / "notes.txt").write_text("not an image")  # ignored
    write_image(root / "train" / "ant" / "upper.JPG", (1, 2, 3), fmt="JPEG")  # case-insensitive
    (root / "classes.json").write_text(json.dumps({"ant": "Ant (insect)"}))

    b = D.load_dataset(DataConfig(val_fraction=0.0, name="folder", root=str(root), image_size=16))
    assert b.classes == ["ant", "bee", "cat"]
    assert b.name == "mine"
    assert len(b.train) == 10 and len(b.test) == 6
    assert b.train.labels == [0] * 4 + [1] * 3 + [2] * 3
    assert b.train.ids[:4] == [
        "train/ant/img_00.png",
        "train/ant/img_01.png",
        "train/ant/img_02.png",
        "train/ant/upper.JPG",
    ]
    assert b.train.classes == b.classes and b.heldout is None
    assert b.human_names == {"ant": "Ant (insect)", "bee": "bee", "cat": "cat"}

    x, y = b.test[3]
    assert isinstance(y, int) and y == 1
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    # Solid colour (40, 10, 200) of "bee" image 1 survives the resize.
    assert torch.allclose(x[:, 0, 0], torch.tensor([40, 10, 200]) / 255.0, atol=1e-6)

    # A directory path as data.name works the same way.
    same = D.load_dataset(DataConfig(val_fraction=0.0, name=str(root), image_size=16))
    assert same.train.ids == b.train.ids and same.fingerprint() == b.fingerprint()


def test_val_folder_is_accepted_as_test(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    make_class_folders(root / "train", {"a": 2, "b": 2})
    make_class_folders(root / "val", {"a": 1, "b": 1})
    b = D.load_dataset(DataConfig(val_fraction=0.0, name="folder", root=str(root), image_size=8))
    assert b.test.ids == ["val/a/img_00.png", "val/b/img_00.png"]


def test_corrupt_image_error_names_the_file(tmp_path: Path) -> None:
    root = make_split_dataset(tmp_path / "ds")
    bad = root / "train" / "bee" / "img_01.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    b = D.load_dataset(DataConfig(val_fraction=0.0, name="folder", root=str(root), image_size=8))
    index = b.train.ids.index("train/bee/img_01.png")
    with pytest.raises(D.CorruptImageError, match="img_01.png") as info:
        b.train[index]
    assert str(bad) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_missing_dataset_errors_say_where_and_how(tmp_path: Path) -> None:
    with pytest.raises(D.DatasetNotFoundError) as info:
        D.load_dataset(DataConfig(val_fraction=0.0, name="imagenette"))
    msg = str(info.value)
    assert str(tmp_path / "data_root" / "imagenette") in msg
    assert "make data" in msg and "LVW_DATA" in msg and "../shared/datasets/imagenette" in msg
    assert isinstance(info.value, FileNotFoundError)

    missing = tmp_path / "nowhere"
    with pytest.raises(D.DatasetNotFoundError, match="nowhere"):
        D.load_dataset(DataConfig(val_fraction=0.0, name="folder", root=str(missing)))
    with pytest.raises(D.DatasetNotFoundError, match="nowhere"):
        D.load_dataset(DataConfig(val_fraction=0.0, name=str(missing)))


def test_unknown_name_lists_registered_datasets() -> None:
    with pytest.raises(ValueError, match="unknown dataset 'imagenet_mini'") as info:
        D.load_dataset(DataConfig(val_fraction=0.0, name="imagenet_mini"))
    for name in ("imagenette", "stl10", "stanford_dogs", "awa2", "synthetic"):
        assert name in str(info.value)
    assert all(spec.description and spec.obtain for spec in D.DATASETS.values())


def test_max_per_class_is_seeded_and_sorted(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    make_class_folders(root / "train", {"a": 8, "b": 8})
    make_class_folders(root / "test", {"a": 4, "b": 4})

    def load(**kw: object) -> D.DatasetBundle:
        return D.load_dataset(DataConfig(val_fraction=0.0, name="folder", root=str(root), image_size=8, **kw))

    one = load(max_per_class=3, max_test_per_class=2, seed=1)
    again = load(max_per_class=3, max_test_per_class=2, seed=1)
    other = load(max_per_class=3, max_test_per_class=2, seed=2)
    assert one.train.ids == again.train.ids and one.test.ids == again.test.ids
    assert one.train.ids != other.train.ids
    assert one.train.ids == sorted(one.train.ids)  # class order, then path order
    assert one.train.labels == [0, 0, 0, 1, 1, 1]
    assert one.test.labels == [0, 0, 1, 1]
    full = load()
    assert len(full.train) == 16 and set(one.train.ids) <= set(full.train.ids)
    # The fingerprint is the cache key: it follows the selected images.
    assert one.fingerprint() == again.fingerprint()
    assert one.fingerprint() != load(max_per_class=4, max_test_per_class=2, seed=1).fingerprint()
    assert full.fingerprint() != one.fingerprint()


def test_fingerprint_follows_file_content_size(tmp_path: Path) -> None:
    root = make_split_dataset(tmp_path / "ds")
    cfg = DataConfig(val_fraction=0.0, name="folder", root=str(root), image_size=8)
    before = D.load_dataset(cfg).fingerprint()
    write_image(root / "train" / "ant" / "img_00.png", (1, 2, 3), size=12)
    assert D.load_dataset(cfg).fingerprint() != before
    assert D.load_dataset(DataConfig(val_fraction=0.0, name="folder", root=str(root), image_size=16)).fingerprint()


def test_holdout_classes(tmp_path: Path) -> None:
    root = make_split_dataset(tmp_path / "ds", train=3, test=2)
    cfg = DataConfig(val_fraction=0.0, name="folder", root=str(root), image_size=8, holdout_classes=("bee",))
    b = D.load_dataset(cfg)
    assert b.classes == ["ant", "cat"] and b.train.classes == ["ant", "cat"]
    assert b.heldout_classes == ["bee"]
    assert b.train.labels == [0, 0, 0, 1, 1, 1]
    assert all("bee" not in i for i in b.train.ids + b.test.ids)
    assert b.heldout is not None and b.heldout.classes == ["bee"]
    assert b.heldout.ids == ["test/bee/img_00.png", "test/bee/img_01.png"]
    assert b.heldout.labels == [0, 0]
    assert set(b.human_names) == {"ant", "bee", "cat"}

    with pytest.raises(ValueError, match="known classes: ant, bee, cat"):
        D.load_dataset(DataConfig(val_fraction=0.0, name="folder", root=str(root), holdout_classes=("dog",)))


def test_single_folder_split_per_class(tmp_path: Path) -> None:
    root = tmp_path / "flat"
    make_class_folders(root, {"x": 10, "y": 5})
    cfg = DataConfig(val_fraction=0.0, name=str(root), image_size=8, split_fraction=0.2, seed=3)
    b = D.load_dataset(cfg)
    assert b.classes == ["x", "y"]
    assert b.test.labels == [0, 0, 1] and b.train.labels == [0] * 8 + [1] * 4
    assert not set(b.train.ids) & set(b.test.ids)
    assert sorted(b.train.ids + b.test.ids) == sorted(
        p.relative_to(root).as_posix() for p in root.rglob("*.png")
    )
    assert b.train.ids == sorted(b.train.ids)
    assert D.load_dataset(cfg).test.ids == b.test.ids  # seeded
    other = D.load_dataset(DataConfig(val_fraction=0.0, name=str(root), image_size=8, split_fraction=0.2, seed=4))
    assert other.test.ids != b.test.ids


def test_train_test_class_mismatch_and_empty_class(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    make_class_folders(root / "train", {"a": 2, "b": 2, "c": 2})
    make_class_folders(root / "test", {"a": 1, "b": 1})
    with pytest.raises(ValueError, match="wrong number of classes") as info:
        D.load_dataset(DataConfig(val_fraction=0.0, name="folder", root=str(root)))
    assert "['c']" in str(info.value)

    (root / "test" / "c").mkdir()
    (root / "test" / "c" / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match="holds no images"):
        D.load_dataset(DataConfig(val_fraction=0.0, name="folder", root=str(root)))


# --------------------------------------------------------------------------- manifest


def test_manifest_verification_and_cached_verdict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A registry name read from $LVW_DATA, as `make data` would link it.
    root = make_split_dataset(tmp_path / "data_root" / "flowers17", train=2, test=1)
    (root / "classes.json").write_text(json.dumps({"ant": "ant"}))
    write_manifest(root)
    cfg = DataConfig(val_fraction=0.0, name="flowers17", image_size=8)

    b = D.load_dataset(cfg)
    assert len(b.train) == 6 and b.root == str(root.resolve())
    verdicts = list((tmp_path / "cache_root" / "manifest").glob("*.json"))
    assert len(verdicts) == 1 and json.loads(verdicts[0].read_text())["ok"] is True

    # The verdict is cached: a second load hashes nothing.
    def no_hashing(*args: object, **kwargs: object) -> None:
        raise AssertionError("hashed again despite a cached verdict")

    with monkeypatch.context() as m:
        m.setattr(manifest, "_check_hashes", no_hashing)
        D.load_dataset(cfg)

    # Same size, other content, touched: hashed again and caught.
    target = root / "train" / "bee" / "img_01.png"
    body = bytearray(target.read_bytes())
    body[-1] ^= 0xFF
    target.write_bytes(bytes(body))
    os.utime(target, ns=(time.time_ns(), time.time_ns() + 10**9))
    with pytest.raises(D.DatasetIntegrityError, match=r"train/bee/img_01.png \(sha256 differs\)"):
        D.load_dataset(cfg)
    # LVW_SKIP_HASH skips the hashes but not the size check.
    monkeypatch.setenv("LVW_SKIP_HASH", "1")
    assert len(D.load_dataset(cfg).train) == 6
    target.write_bytes(bytes(body) + b"extra")
    with pytest.raises(D.DatasetIntegrityError, match=r"train/bee/img_01.png \(size"):
        D.load_dataset(cfg)
    target.unlink()
    with pytest.raises(D.DatasetIntegrityError, match=r"img_01.png \(missing\)"):
        D.load_dataset(cfg)


def test_manifest_hash_mismatch_on_first_check(tmp_path: Path) -> None:
    root = make_split_dataset(tmp_path / "ds", train=2, test=1)
    write_manifest(root)
    target = root / "test" / "cat" / "img_00.png"
    body = bytearray(target.read_bytes())
    body[-1] ^= 0xFF
    target.write_bytes(bytes(body))
    with pytest.raises(D.DatasetIntegrityError, match="test/cat/img_00.png"):
        D.verify_manifest(root, progress=False)
    assert not (tmp_path / "cache_root" / "manifest").exists()  # failures are not cached
    D.verify_manifest(root, check_hash=False)  # sizes still match


# --------------------------------------------------------------------------- official layouts


def test_stanford_dogs_layout(tmp_path: Path) -> None:
    root = tmp_path / "dogs"
    breeds = ["n02085620-Chihuahua", "n02085782-Japanese_spaniel"]
    split_files: dict[str, list[str]] = {"train": [], "test": []}
    split_labels: dict[str, list[int]] = {"train": [], "test": []}
    for k, breed in enumerate(breeds):
        for i in range(3):
            rel = f"{breed}/{breed.split('-')[0]}_{i}.jpg"
            write_image(root / "Images" / rel, (100 * k, 50, 50), fmt="JPEG")
            split = "test" if i == 2 else "train"
            split_files[split].append(rel)
            split_labels[split].append(k + 1)  # 1-based, as in the official lists
    for split in ("train", "test"):
        cells = np.empty((len(split_files[split]), 1), dtype=object)
        for j, rel in enumerate(split_files[split]):
            cells[j, 0] = np.array([rel])
        labels = np.array(split_labels[split], dtype=np.uint8)[:, None]
        scipy.io.savemat(root / f"{split}_list.mat", {"file_list": cells, "labels": labels})

    b = D.load_dataset(DataConfig(val_fraction=0.0, name="stanford_dogs", root=str(root), image_size=8))
    assert b.classes == breeds
    assert b.train.labels == [0, 0, 1, 1] and b.test.labels == [0, 1]
    assert b.test.ids == [
        f"Images/{breeds[0]}/n02085620_2.jpg",
        f"Images/{breeds[1]}/n02085782_2.jpg",
    ]
    assert b.human_names[breeds[1]] == "Japanese spaniel"
    assert b.train[3][0].shape == (3, 8, 8)

    with pytest.raises(D.DatasetNotFoundError, match="train_list.mat"):
        D.load_dataset(DataConfig(val_fraction=0.0, name="stanford_dogs", root=str(tmp_path / "empty")))


@pytest.mark.parametrize("nested", [True, False])
def test_awa2_layout(tmp_path: Path, nested: bool) -> None:
    root = tmp_path / "awa2"
    base = root / "Animals_with_Attributes2" if nested else root
    # Official order is not alphabetical: labels must follow classes.txt.
    (base / "JPEGImages").mkdir(parents=True)
    (base / "classes.txt").write_text("  1\tzebra\n  2\tantelope\n  3\tgrizzly+bear\n")
    make_class_folders(
        base / "JPEGImages", {"zebra": 5, "antelope": 5, "grizzly+bear": 5}, ".jpg", "JPEG"
    )
    cfg = DataConfig(val_fraction=0.0, name="awa2", root=str(root), image_size=8, split_fraction=0.4, seed=0)
    b = D.load_dataset(cfg)
    assert b.classes == ["zebra", "antelope", "grizzly+bear"]
    assert b.test.labels == [0, 0, 1, 1, 2, 2] and len(b.train) == 9
    assert not set(b.train.ids) & set(b.test.ids)
    assert b.train.ids[0].startswith(
        "Animals_with_Attributes2/JPEGImages/zebra/" if nested else "JPEGImages/zebra/"
    )
    assert b.human_names["grizzly+bear"] == "grizzly bear"
    assert D.load_dataset(cfg).test.ids == b.test.ids

    with pytest.raises(D.DatasetNotFoundError, match="JPEGImages"):
        D.load_dataset(DataConfig(val_fraction=0.0, name="awa2", root=str(tmp_path / "none")))


def test_torchvision_set_missing_fails_fast_without_download(tmp_path: Path) -> None:
    for name, sub in [("stl10", "stl10_binary"), ("pets", "oxford-iiit-pet")]:
        start = time.perf_counter()
        with pytest.raises(D.DatasetNotFoundError) as info:
            D.load_dataset(DataConfig(val_fraction=0.0, name=name))
        assert time.perf_counter() - start < 5.0
        msg = str(info.value)
        assert str(tmp_path / "data_root" / name / sub) in msg and "data.download: true" in msg

    # A present but broken layout: torchvision's own error becomes DatasetNotFoundError.
    broken = tmp_path / "flowers"
    (broken / "flowers-102").mkdir(parents=True)
    with pytest.raises(D.DatasetNotFoundError, match="flowers-102"):
        D.load_dataset(DataConfig(val_fraction=0.0, name="flowers102", root=str(broken)))


def test_torchvision_adapter_on_a_tiny_pets_layout(tmp_path: Path) -> None:
    # OxfordIIITPet only checks that images/ and annotations/ exist: a fake copy loads.
    base = tmp_path / "pets" / "oxford-iiit-pet"
    (base / "annotations").mkdir(parents=True)
    rows = {"trainval": [], "test": []}
    for k, breed in enumerate(["Abyssinian", "american_bulldog"]):
        for i in range(1, 4):
            write_image(base / "images" / f"{breed}_{i}.jpg", (90 * k, 30, 30), fmt="JPEG")
            rows["test" if i == 3 else "trainval"].append(f"{breed}_{i} {k + 1} {k + 1} 1")
    for split, lines in rows.items():
        (base / "annotations" / f"{split}.txt").write_text("\n".join(lines) + "\n")

    b = D.load_dataset(DataConfig(val_fraction=0.0, name="pets", root=str(tmp_path / "pets"), image_size=8))
    assert b.classes == ["Abyssinian", "American Bulldog"]
    assert b.train.labels == [0, 0, 1, 1] and b.test.labels == [0, 1]
    assert b.test.ids == [
        "oxford-iiit-pet/images/Abyssinian_3.jpg",
        "oxford-iiit-pet/images/american_bulldog_3.jpg",
    ]
    x, y = b.test[1]
    assert x.shape == (3, 8, 8) and x.dtype == torch.float32 and y == 1
    small = D.load_dataset(
        DataConfig(val_fraction=0.0, name="pets", root=str(tmp_path / "pets"), image_size=8, max_per_class=1)
    )
    assert len(small.train) == 2 and small.fingerprint() != b.fingerprint()


# --------------------------------------------------------------------------- synthetic


def test_synthetic_shapes_and_determinism() -> None:
    cfg = DataConfig(val_fraction=0.0, name="synthetic", image_size=32, seed=0)
    b = D.load_dataset(cfg)
    assert b.classes == ["square", "disc", "bar"] and b.root is None
    assert len(b.train) == 36 and len(b.test) == 18
    assert b.train.labels == [0] * 12 + [1] * 12 + [2] * 12
    x, y = b.train[13]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and y == 1
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0

    # Masks mark the shape, whose colour differs from the background's.
    assert isinstance(b.train, D.TensorImageDataset) and b.train.masks is not None
    mask = b.train.masks[13]
    assert 0 < int(mask.sum()) < 32 * 32 // 2
    assert float(x[1][mask].mean()) > 0.7 > float(x[1][~mask].mean())  # green disc

    again = D.load_dataset(cfg)
    assert torch.equal(again.train.images, b.train.images)
    assert again.fingerprint() == b.fingerprint()
    other = D.load_dataset(DataConfig(val_fraction=0.0, name="synthetic", image_size=32, seed=1))
    assert not torch.equal(other.train.images, b.train.images)
    assert other.fingerprint() != b.fingerprint()

    small = D.load_dataset(
        DataConfig(val_fraction=0.0, name="synthetic", image_size=32, max_per_class=4, max_test_per_class=2)
    )
    assert len(small.train) == 12 and len(small.test) == 6
    assert small.fingerprint() != b.fingerprint()
    held = D.load_dataset(DataConfig(val_fraction=0.0, name="synthetic", image_size=32, holdout_classes=("bar",)))
    assert held.classes == ["square", "disc"] and held.heldout is not None
    assert len(held.heldout) == 6 and held.heldout.labels == [0] * 6


def test_tensor_dataset_resizes() -> None:
    images = torch.randint(0, 256, (2, 3, 10, 10), dtype=torch.uint8)
    ds = D.TensorImageDataset(images, [0, 1], ["a", "b"], image_size=6)
    x, y = ds[1]
    assert x.shape == (3, 6, 6) and y == 1 and 0.0 <= float(x.min()) <= float(x.max()) <= 1.0
    assert ds.ids == ["000000", "000001"]


# --------------------------------------------------------------------------- shared copy


@pytest.mark.skipif(not SHARED_FLOWERS17.is_dir(), reason="no shared flowers17 copy")
def test_shared_flowers17(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LVW_SKIP_HASH", "1")
    cfg = DataConfig(
        name="flowers17",
        root=str(SHARED_FLOWERS17),
        image_size=32,
        max_per_class=2,
        max_test_per_class=1,
    )
    b = D.load_dataset(cfg)
    assert len(b.classes) == 17 and len(b.train) == 34 and len(b.test) == 17
    assert b.human_names["01_daffodil"] == "daffodil"
    x, y = b.train[0]
    assert x.shape == (3, 32, 32) and y == 0


def test_validation_is_carved_from_train_stratified_seeded_and_disjoint(tmp_path):
    root = tmp_path / "folders"
    for c, n in (("ant", 10), ("bee", 5), ("cat", 1)):
        (root / "train" / c).mkdir(parents=True)
        (root / "test" / c).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (4, 4), (i, 0, 0)).save(root / "train" / c / f"{i}.png")
        Image.new("RGB", (4, 4)).save(root / "test" / c / "t.png")
    cfg = DataConfig(name=str(root), image_size=8, val_fraction=0.2)
    b = D.load_dataset(cfg)
    # round(0.2 * 10) = 2, round(0.2 * 5) = 1, a class of one image keeps it for training
    assert sorted(b.val.labels) == [0, 0, 1]
    assert len(b.train) == 8 + 4 + 1
    assert set(b.val.ids).isdisjoint(b.train.ids)
    again = D.load_dataset(cfg)
    assert again.val.ids == b.val.ids  # seeded
    other = D.load_dataset(DataConfig(name=str(root), image_size=8, val_fraction=0.2, seed=1))
    assert other.val.ids != b.val.ids or len(b.val) < 3
    # the cap applies after carving: no validation image can enter training
    capped = D.load_dataset(DataConfig(name=str(root), image_size=8, val_fraction=0.2, max_per_class=3))
    assert set(capped.val.ids) == set(b.val.ids) and set(capped.train.ids).isdisjoint(b.val.ids)
    assert D.load_dataset(DataConfig(name=str(root), image_size=8, val_fraction=0.0)).val is None
