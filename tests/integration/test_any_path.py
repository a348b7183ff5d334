"""Paths and photos as users have them: spaces, accents, symlinks, macOS litter, ``.JPG``,
EXIF-rotated photos, tiny and huge images (lvwlib.data) and how ``DATASETS`` is read
(lvwlib.experiment.reproduce). The whole ``make reproduce`` on such a folder is in
test_user_runs.py; these checks take a second.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from user_folders import CLASS_FOLDERS, make_user_folder, save_exif_rotated

from lvwlib.core.config import DataConfig
from lvwlib.data import load_dataset, load_image
from lvwlib.experiment.names import absolute_dataset, results_name
from lvwlib.experiment.reproduce import Run, analyses_config, planned_analyses, split_datasets
from lvwlib.store.paths import resolve


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_user_folder(tmp_path_factory.mktemp("user"))


def _load(path) -> object:
    return load_dataset(DataConfig(name=str(path), image_size=32))


def test_a_users_folder_loads_as_they_see_it(folder):
    bundle = _load(folder)
    assert bundle.classes == sorted(CLASS_FOLDERS.values())  # crème_brûlée first; no .DS_Store "class"
    ids = bundle.train.ids + bundle.val.ids + bundle.test.ids
    assert len(ids) == 36  # 12 images per class: every .JPG read, .DS_Store and ._* copies skipped
    assert not any(name.rsplit("/", 1)[-1].startswith(".") for name in ids)
    assert sum(i.endswith(".JPG") for i in ids) == 3 * 5 and any(i.startswith("crème_brûlée/") for i in ids)
    for dataset in (bundle.train, bundle.val, bundle.test):
        for i in range(len(dataset)):
            x, _ = dataset[i]  # the 1600 x 1200 and 4 x 4 images too
            assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1


def test_exif_rotation_is_applied(tmp_path):
    # left half black, right half white, 8 x 16 (wide); stored turned with Orientation 6
    pixels = np.zeros((8, 16, 3), dtype=np.uint8)
    pixels[:, 8:] = 255
    save_exif_rotated(pixels, tmp_path / "portrait.jpg")
    with Image.open(tmp_path / "portrait.jpg") as raw:
        assert raw.size == (8, 16)  # stored on its side: 8 wide, 16 high
    x = load_image(tmp_path / "portrait.jpg", 16)[0]  # [16, 16], the 8 x 16 image stretched
    assert x[:, :6].max() < 0.1 and x[:, 10:].min() > 0.9  # black left, white right: as a viewer shows it


def test_a_symlinked_folder_is_the_same_dataset(folder, tmp_path):
    link = tmp_path / "food link"
    link.symlink_to(folder, target_is_directory=True)
    a, b = _load(folder), _load(link)
    assert a.train.ids == b.train.ids and a.classes == b.classes
    assert torch.equal(a.test[0][0], b.test[0][0])
    assert results_name(str(link)) == results_name(str(folder))  # one results folder for both
    assert results_name(str(folder)).startswith("food-")


def test_datasets_with_spaces_commas_or_words(folder, tmp_path, monkeypatch):
    assert split_datasets(str(folder)) == [str(folder)]  # an existing folder: spaces kept
    assert split_datasets(f" {folder} ") == [str(folder)]
    assert split_datasets(f"imagenette, {folder}") == ["imagenette", str(folder)]
    assert split_datasets("imagenette imagewoof  flowers17") == ["imagenette", "imagewoof", "flowers17"]
    assert split_datasets("imagenette imagenette") == ["imagenette"]
    for bad in ("", "  ", "imagenette,,imagewoof"):
        with pytest.raises(ValueError):
            split_datasets(bad)
    monkeypatch.chdir(folder.parent)  # a relative folder with an accent, from where it lies
    assert split_datasets("food") == ["food"] and absolute_dataset("./food") == str(folder)


def test_analyses_on_datasets_not_in_the_run_are_skipped_with_the_reason(folder):
    run = Run(resolve("params/tiny.yaml"), (absolute_dataset(str(folder)),), resolve("runs/unused"))
    plan = {notebook: (parameters, why) for notebook, parameters, why in planned_analyses(run)}
    assert plan["06_figure2"][0]["datasets"] == [str(folder)]  # Figure 2: on the user's folder
    assert plan["11_faithfulness"][0]["datasets"] == [str(folder)]  # border and faithfulness: every dataset
    assert list(plan)[-1] == "11_faithfulness"  # last of the analyses: the report reads its tables
    cfg = analyses_config(run)  # tiny.yaml's analyses: section
    (case,) = cfg.unseen_cases()
    unseen = f"09_unseen_{case.dataset}"  # notebook 09 runs once per case, named by its dataset
    for notebook, key, dataset in (("07_k_sweep", "k_dataset", cfg.k_dataset),
                                   ("08_visual_words", "words_dataset", cfg.words_dataset),
                                   (unseen, "unseen", case.dataset)):
        parameters, why = plan[notebook]
        assert parameters is None and f"{dataset!r} (params analyses.{key}) is not among" in why
    both = Run(run.params_file, (*run.datasets, cfg.k_dataset), run.results)
    plan = {notebook: parameters for notebook, parameters, _ in planned_analyses(both)}
    # tiny.yaml names one dataset for all three; the notebooks read the k values from the same
    # params file, and 09 gets its case's held-out classes
    assert cfg.k_dataset == cfg.words_dataset == case.dataset
    for notebook in ("07_k_sweep", "08_visual_words"):
        assert plan[notebook] == {**both.base_parameters(), "dataset": cfg.k_dataset}
    assert plan[unseen] == {**both.base_parameters(), "dataset": cfg.k_dataset, "heldout_classes": list(case.classes)}
    assert both.base_parameters()["params_file"] == "params/tiny.yaml"  # inside the project: relative
