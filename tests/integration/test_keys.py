"""Cache keys follow intent: an edit of a method's code invalidates that method's results only.

The fingerprints read a copy of the package (``LVW_CODE_ROOT``), which the test edits;
the code that runs is the real one, so only the keys see the edit. On tiny data:

- editing SRAE's module changes SRAE's result key only, and a rerun serves every other
  method from the cache (only SRAE is fitted again);
- editing the prototype networks' losses changes exactly LVW, LVW w/o alignment,
  ProtoPNet and ProtoPShare (through the ProtoPNet it builds on);
- editing the evaluation changes every result key and no trained model's key.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import lvwlib
from lvwlib.core.config import load_params
from lvwlib.experiment import keys, stages
from lvwlib.experiment.config import experiment_from_params
from lvwlib.experiment.runner import run_all
from lvwlib.methods import registry
from lvwlib.store.cache import cache_key
from lvwlib.store.fingerprint import ROOT_ENV
from lvwlib.store.paths import resolve

PROTOTYPE_NETS = {"lvw", "lvw_noalign", "protopnet", "protopshare"}


def _edit(path: Path) -> None:
    path.write_text(path.read_text() + "\n# an edit that changes no number\n")


def _changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {m for m in before if before[m] != after[m]}


def test_edits_invalidate_what_they_change_and_nothing_else(tmp_path, monkeypatch):
    root = tmp_path / "code"
    shutil.copytree(Path(lvwlib.__file__).parent, root / "lvwlib", ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setenv(ROOT_ENV, str(root))
    params = load_params(resolve("params/tiny.yaml"))
    params["cache_dir"] = str(tmp_path / "cache")
    exp = experiment_from_params(params, "synthetic")
    assert set(exp.methods) == set(registry.names()) >= PROTOTYPE_NETS | {"base", "prototree", "srae"}
    first = {r["method"]: r for r in run_all(exp, progress=False)}
    features = keys.feature_inputs(exp)

    def model_keys() -> dict[str, str]:
        return {m: cache_key(keys.model_inputs(exp, m, 0, features)) for m in exp.methods}

    def result_keys() -> dict[str, str]:
        return {m: cache_key(keys.result_inputs(keys.model_inputs(exp, m, 0, features))) for m in exp.methods}

    results, models = result_keys(), model_keys()
    _edit(root / "lvwlib" / "methods" / "srae" / "model.py")
    assert _changed(results, result_keys()) == {"srae"}
    assert _changed(models, model_keys()) == {"srae"}

    # a rerun fits SRAE again and serves every other row from the cache
    fitted: list[str] = []
    real_fit = stages.fit_method

    def recording_fit(prep, base, method, seed, progress=True):
        fitted.append(method)
        return real_fit(prep, base, method, seed, progress)

    monkeypatch.setattr(stages, "fit_method", recording_fit)
    again = {r["method"]: r for r in run_all(exp, progress=False)}
    assert fitted == ["srae"]
    for method in set(exp.methods) - {"srae"}:
        assert again[method]["accuracy"] == first[method]["accuracy"]
        assert again[method]["per_image_iou"] == first[method]["per_image_iou"]

    results, models = result_keys(), model_keys()
    _edit(root / "lvwlib" / "core" / "losses.py")
    assert _changed(results, result_keys()) == PROTOTYPE_NETS
    assert _changed(models, model_keys()) == PROTOTYPE_NETS

    results, models = result_keys(), model_keys()
    _edit(root / "lvwlib" / "experiment" / "evaluate.py")
    assert _changed(results, result_keys()) == set(exp.methods)
    assert _changed(models, model_keys()) == set()


def test_the_fingerprint_root_is_where_the_keys_read_the_code(tmp_path, monkeypatch):
    exp = experiment_from_params(load_params(resolve("params/tiny.yaml")), "synthetic")
    features = {"data": "fixed"}  # no data listing needed: only the code parts of the key matter here
    real = keys.model_inputs(exp, "lvw", 0, features)
    monkeypatch.setenv(ROOT_ENV, str(tmp_path))  # an empty folder: lvwlib's sources are not there
    with pytest.raises(ModuleNotFoundError, match="no source file for module 'lvwlib[.]"):
        keys.model_inputs(exp, "lvw", 0, features)
    monkeypatch.delenv(ROOT_ENV)
    assert keys.model_inputs(exp, "lvw", 0, features) == real
