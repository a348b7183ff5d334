"""Bad inputs fail with an error naming the file or key, and write nothing.

Each case builds its inputs under a temporary folder (a params file, class
folders of tiny PNG/JPEG images, possibly a populated cache), snapshots every
file under the results, cache, manifest cache and data folders, runs what a
notebook runs (:func:`run_like_notebook`) and checks the error message and
that the snapshot is unchanged: no new, changed or removed file.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from lvwlib.core.config import load_params
from lvwlib.experiment.config import load_experiment
from lvwlib.experiment.names import results_name
from lvwlib.experiment.runner import run_all
from lvwlib.store.paths import resolve
from lvwlib.store.records import RunRecord, write_json


def run_like_notebook(params_file: Path, dataset: str | None, results: Path) -> None:
    """What notebooks 01-03 do: parse the params, prepare, train, evaluate, write results."""
    exp = load_experiment(params_file, dataset)
    out_dir = results / results_name(dataset or exp.run.data.name)
    with RunRecord(out_dir, exp.to_dict()):
        rows = run_all(exp, progress=False)
        write_json(out_dir / "rows.json", [{k: r[k] for k in ("method", "accuracy", "iou")} for r in rows])


@dataclass
class Case:
    """``setup(tmp)`` writes the inputs and returns (params overrides, dataset); the error must match."""

    setup: Callable[[Path], tuple[dict, str | None]]
    error: type[BaseException]
    needles: tuple[str, ...]  # substrings the message must contain ("{tmp}" is replaced)


def _image(path: Path, colour: tuple[int, int, int], size: int = 16) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.zeros((size, size, 3), dtype=np.uint8) + np.array(colour, dtype=np.uint8)
    arr[: size // 2, : size // 2] = 255 - arr[: size // 2, : size // 2]  # some structure
    Image.fromarray(arr).save(path)


def _folders(root: Path, layout: dict[str, dict[str, int]]) -> Path:
    """``layout = {split or '': {class: n images}}``: 16 px PNGs of one colour per class."""
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
    for split, classes in layout.items():
        for c, (name, n) in enumerate(classes.items()):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                _image(root / split / name / f"{i}.png", colours[c % 3])
    return root


def _good_split(tmp: Path) -> Path:
    return _folders(tmp / "data" / "pets", {"train": {"cat": 4, "dog": 4}, "test": {"cat": 2, "dog": 2}})


def missing_dataset(tmp):
    return {}, str(tmp / "data" / "nope")


def empty_class_folder(tmp):
    root = _folders(tmp / "data" / "pets", {"": {"cat": 4}})
    (root / "dog").mkdir()
    (root / "dog" / "notes.txt").write_text("not an image")
    return {}, str(root)


def single_class(tmp):
    return {}, str(_folders(tmp / "data" / "pets", {"": {"cat": 5}}))


def corrupt_jpeg(tmp):
    root = _good_split(tmp)
    # a truncated JPEG among the test images: found after the train features are
    # computed, which must then not be stored either
    _image(tmp / "ok.jpg", (10, 200, 10), size=64)
    data = (tmp / "ok.jpg").read_bytes()
    (root / "test" / "dog" / "bad.jpg").write_bytes(data[: len(data) // 2])
    (tmp / "ok.jpg").unlink()
    return {}, str(root)


def non_image_file(tmp):
    root = _good_split(tmp)
    (root / "train" / "cat" / "readme.png").write_text("this is text, not a PNG")
    return {}, str(root)


def class_mismatch(tmp):
    root = _folders(tmp / "data" / "pets", {"train": {"cat": 3, "dog": 3}, "test": {"cat": 2, "fox": 2}})
    return {}, str(root)


def unknown_method(tmp):
    return {"methods": ["base", "lvvw"]}, None


def unknown_key(tmp):
    return {"lvw": {"lr_word": 0.01}}, None


def wrong_type(tmp):
    return {"lvw": {"lr_words": "fast"}}, None


def quantile_out_of_range(tmp):
    return {"eval": {"quantile": 150}}, None


def wrong_type_seeds(tmp):
    return {"seeds": "0, 1"}, None


def unknown_holdout_class(tmp):
    return {"data": {"holdout_classes": ["zebra"]}}, str(_good_split(tmp))


def _inputs(meta: dict) -> dict:
    """The key inputs of a cache entry's json (``{"inputs": ..., "provenance": ...}``)."""
    return meta.get("inputs", meta)


def _populate(tmp: Path, overrides: dict) -> None:
    """A successful run first, so the cache holds real entries to tamper with."""
    params_file = _write_params(tmp, overrides)
    run_like_notebook(params_file, None, tmp / "results")


def checkpoint_of_another_config(tmp):
    overrides = {"methods": ["lvw_noalign", "lvw"]}
    _populate(tmp, overrides)
    models = sorted((tmp / "cache" / "models").glob("*.pt"))
    by_beta = {torch.load(p, weights_only=False)["config"]["beta_align"]: p for p in models}
    assert set(by_beta) == {0.0, 10.0}
    # the LVW checkpoint replaced by the one of LVW w/o alignment, its result entry removed
    shutil.copyfile(by_beta[0.0], by_beta[10.0])
    for meta in (tmp / "cache" / "results").glob("*.json"):
        if _inputs(json.loads(meta.read_text()))["method"] == "lvw":
            meta.unlink()
            meta.with_suffix(".pt").unlink()
    return overrides, None


def cache_entry_of_another_config(tmp):
    overrides = {"methods": ["base"]}
    _populate(tmp, overrides)
    meta = sorted((tmp / "cache" / "features").glob("*.json"))[0]
    stored = json.loads(meta.read_text())
    _inputs(stored)["backbone"]["tail"] = "another"
    meta.write_text(json.dumps(stored))
    return overrides, None


CASES: dict[str, Case] = {
    "missing dataset": Case(missing_dataset, FileNotFoundError, ("{tmp}/data/nope",)),
    "empty class folder": Case(empty_class_folder, ValueError, ("{tmp}/data/pets/dog", "no images")),
    "single class": Case(single_class, ValueError, ("{tmp}/data/pets", "1 class", "at least 2")),
    "corrupt jpeg": Case(corrupt_jpeg, ValueError, ("cannot read image", "{tmp}/data/pets/test/dog/bad.jpg")),
    "non-image file": Case(non_image_file, ValueError, ("cannot read image", "{tmp}/data/pets/train/cat/readme.png")),
    "train/test class mismatch": Case(class_mismatch, ValueError, ("{tmp}/data/pets/train", "['dog']", "['fox']")),
    "unknown method": Case(unknown_method, ValueError, ("params.yaml", "methods", "lvvw")),
    "unknown param key": Case(unknown_key, ValueError, ("params.yaml", "lvw.lr_word", "did you mean", "lr_words")),
    "wrong type": Case(wrong_type, ValueError, ("params.yaml", "lvw.lr_words")),
    "q outside [0, 100]": Case(quantile_out_of_range, ValueError, ("params.yaml", "eval.quantile")),
    "seeds not a list": Case(wrong_type_seeds, ValueError, ("params.yaml", "seeds")),
    "unknown held-out class": Case(unknown_holdout_class, ValueError, ("data.holdout_classes", "zebra")),
    "checkpoint of another config": Case(
        checkpoint_of_another_config, RuntimeError, ("checkpoint {tmp}/cache/models/", "another config")
    ),
    "cache entry of another config": Case(
        cache_entry_of_another_config, RuntimeError, ("cache entry {tmp}/cache/features/", "another config")
    ),
}


def _write_params(tmp: Path, overrides: dict) -> Path:
    params = load_params(resolve("params/tiny.yaml"))
    params["cache_dir"] = str(tmp / "cache")
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(params.get(key), dict):
            params[key] = {**params[key], **value}
        else:
            params[key] = value
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def _snapshot(*folders: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folders``: path -> (size, mtime ns).

    Empty ``.lock`` files (lvwlib.store.cache's inter-process key locks, kept by
    design) are not results and are left out, and so is the exported ONNX trunk
    (``trunk_onnx/``): it depends on the backbone config only, never on the data,
    so a bad input cannot make it wrong and the next run reuses it.
    """
    return {
        str(p): (p.stat().st_size, p.stat().st_mtime_ns)
        for folder in folders if folder.exists() for p in sorted(folder.rglob("*"))
        if p.is_file() and not (p.name.endswith(".lock") and p.stat().st_size == 0)
        and "trunk_onnx" not in p.parts
    }


def test_there_are_at_least_12_cases():
    assert len(CASES) >= 12


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_fails_clearly_and_writes_nothing(name, tmp_path, monkeypatch):
    monkeypatch.setenv("LVW_CACHE", str(tmp_path / "lvw_cache"))  # manifest verdicts
    monkeypatch.setenv("LVW_DATA", str(tmp_path / "data"))
    case = CASES[name]
    overrides, dataset = case.setup(tmp_path)
    params_file = _write_params(tmp_path, overrides)
    watched = [tmp_path / d for d in ("results", "cache", "lvw_cache", "data")]
    before = _snapshot(*watched)
    with pytest.raises(case.error) as info:
        run_like_notebook(params_file, dataset, tmp_path / "results")
    message = str(info.value)
    for needle in case.needles:
        assert needle.replace("{tmp}", str(tmp_path)) in message, f"{needle!r} not in: {message}"
    assert _snapshot(*watched) == before, "files were written, changed or removed"
