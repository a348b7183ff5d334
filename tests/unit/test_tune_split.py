"""A dataset's own validation split (``tune/``) and Oxford 102 Flowers in both layouts.

Every dataset is built in ``tmp_path`` from 8x8 images; nothing from tune/ or the test
split may enter training, and tune/ replaces the validation carved from train/.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from lvwlib import data as D
from lvwlib.core.config import DataConfig

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated_roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LVW_DATA", str(tmp_path / "data_root"))
    monkeypatch.setenv("LVW_CACHE", str(tmp_path / "cache_root"))


def write_image(path: Path, colour: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path, format="JPEG")


# Oxford-102-like toy: 3 classes, image ids 1..30; the official split lists by id.
CLASSES = ["001_pink_primrose", "002_hard_leaved_pocket_orchid", "003_canterbury_bells"]
LABELS = {i: (i - 1) % 3 for i in range(1, 31)}  # image id -> class index
TRAIN_IDS, VAL_IDS, TEST_IDS = list(range(1, 7)), list(range(7, 13)), list(range(13, 31))


def name(i: int) -> str:
    return f"image_{i:05d}.jpg"


def folder_layout(root: Path, tune_per_class: int = 2) -> Path:
    """The offline copy's layout: train/ (official train), val/ (official val), tune/ (from official test)."""
    tune = [i for c in range(3) for i in [j for j in TEST_IDS if LABELS[j] == c][:tune_per_class]]
    for split, ids in (("train", TRAIN_IDS), ("val", VAL_IDS), ("tune", tune)):
        for i in ids:
            write_image(root / split / CLASSES[LABELS[i]] / name(i), (80 * LABELS[i], 3 * i, 90))
    return root


def torchvision_layout(root: Path) -> Path:
    base = root / "flowers-102"
    for i in LABELS:
        write_image(base / "jpg" / name(i), (80 * LABELS[i], 3 * i, 90))
    scipy.io.savemat(base / "imagelabels.mat", {"labels": np.array([[LABELS[i] + 1 for i in sorted(LABELS)]])})
    scipy.io.savemat(base / "setid.mat", {"trnid": np.array([TRAIN_IDS]), "valid": np.array([VAL_IDS]),
                                          "tstid": np.array([TEST_IDS])})
    return root


def basenames(ds: D.LabelledImageDataset) -> list[str]:
    return [Path(i).name for i in ds.ids]


def test_a_tune_folder_is_the_validation_split_and_never_training(tmp_path: Path) -> None:
    root = folder_layout(tmp_path / "flowers_copy")
    # a path (the user's own folders) and the registry name both read tune/
    for cfg in (DataConfig(name=str(root), image_size=8, val_fraction=0.15),
                DataConfig(name="flowers102", root=str(root), image_size=8, val_fraction=0.15)):
        b = D.load_dataset(cfg)
        assert b.val is not None
        assert all(i.startswith("tune/") for i in b.val.ids) and len(b.val) == 6
        assert all(i.startswith("train/") for i in b.train.ids)
        # nothing carved from train (val_fraction is ignored) and nothing of tune/ or test in it
        assert sorted(basenames(b.train)) == sorted(name(i) for i in TRAIN_IDS)
        assert not {*basenames(b.val), *basenames(b.test)} & set(basenames(b.train))
        assert sorted(basenames(b.test)) == sorted(name(i) for i in VAL_IDS)
        assert b.classes == CLASSES


def test_without_tune_the_validation_is_still_carved_from_train(tmp_path: Path) -> None:
    root = folder_layout(tmp_path / "copy")
    for p in sorted((root / "tune").rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    (root / "tune").rmdir()
    b = D.load_dataset(DataConfig(name=str(root), image_size=8, val_fraction=0.5))
    assert b.val is not None and all(i.startswith("train/") for i in b.val.ids)
    assert not set(b.val.ids) & set(b.train.ids)


def test_a_tune_folder_with_other_classes_is_an_error(tmp_path: Path) -> None:
    root = folder_layout(tmp_path / "copy")
    write_image(root / "tune" / "004_sweet_pea" / name(99), (1, 2, 3))
    with pytest.raises(ValueError, match="tune"):
        D.load_dataset(DataConfig(name=str(root), image_size=8))


def test_flowers102_torchvision_layout_gives_the_same_train_and_test(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    # the toy .mat files cannot have the official md5 sums; everything else is torchvision's own code
    monkeypatch.setattr(torchvision.datasets.Flowers102, "_check_integrity", lambda self: True)
    tv = D.load_dataset(DataConfig(name="flowers102", root=str(torchvision_layout(tmp_path / "tv")), image_size=8))
    folders = D.load_dataset(DataConfig(name="flowers102", root=str(folder_layout(tmp_path / "f")), image_size=8))
    for split in ("train", "test"):
        a, b = getattr(tv, split), getattr(folders, split)
        assert sorted(zip(basenames(a), a.labels, strict=True)) == sorted(zip(basenames(b), b.labels, strict=True))
    # validation: from the official test split, 10 per class at most, never in train or test
    assert tv.val is not None
    assert {Path(i).name for i in tv.val.ids} <= {name(i) for i in TEST_IDS}
    assert len(tv.val) == 18  # 6 per class here, fewer than the 10 drawn
    assert not set(basenames(tv.val)) & (set(basenames(tv.train)) | set(basenames(tv.test)))


def test_flowers102_missing_names_both_layouts(tmp_path: Path) -> None:
    with pytest.raises(D.DatasetNotFoundError, match=r"train/ \+ val/.*flowers-102"):
        D.load_dataset(DataConfig(name="flowers102", root=str(tmp_path / "nothing")))


# The shared copies make reproduce runs on (skipped where `make data` has not linked them).
SHARED_WITH_SPLITS = ("flowers102", "food101_10", "animals22")


@pytest.mark.parametrize("dataset", SHARED_WITH_SPLITS)
def test_shared_sets_train_on_nothing_of_tune_or_test(dataset: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With default.yaml's settings for the dataset: tune/ (where there is one) is the validation
    split, and no file of validation or test enters training: by path and by content."""
    import hashlib

    from lvwlib.core.config import load_params
    from lvwlib.experiment.config import experiment_from_params
    from lvwlib.store.paths import resolve

    root = resolve("data") / dataset
    if not (root / "train").is_dir():
        pytest.skip(f"no data/{dataset} (make data links it)")
    monkeypatch.setenv("LVW_DATA", str(resolve("data")))
    b = D.load_dataset(experiment_from_params(load_params(resolve("params/default.yaml")), dataset).run.data)
    assert b.val is not None
    if (root / "tune").is_dir():
        assert all(i.startswith("tune/") for i in b.val.ids)  # tune/ replaces the carved validation
    assert all(i.startswith("train/") for i in b.train.ids)  # never tune/ or the test folder
    assert all(not i.startswith(("train/", "tune/")) for i in b.test.ids)
    files = {s: set(getattr(b, s).ids) for s in ("train", "val", "test")}
    assert not files["train"] & (files["val"] | files["test"]) and not files["val"] & files["test"]
    content = {s: {hashlib.sha256((root / i).read_bytes()).hexdigest() for i in ids} for s, ids in files.items()}
    assert not content["train"] & (content["val"] | content["test"])  # no copy of a held-out image either
    assert not content["val"] & content["test"]
