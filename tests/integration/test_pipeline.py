"""The whole pipeline on tiny synthetic data: features -> base -> every method -> tables."""

from __future__ import annotations

import pytest
import torch

from lvwlib.core.config import load_params
from lvwlib.experiment.config import experiment_from_params
from lvwlib.experiment.stages import base_for_seed, prepare, run_method
from lvwlib.methods import registry
from lvwlib.paper.tables import long_rows, summarise, table1_markdown
from lvwlib.store.paths import resolve

METHODS = registry.names()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    params = load_params(resolve("params/tiny.yaml"))
    params["cache_dir"] = str(tmp_path_factory.mktemp("cache"))
    # a few more images and epochs than the notebooks' tiny setting, so learning is visible
    params["data"].update(max_per_class=16, max_test_per_class=8)
    params["base"].update(epochs=12)
    exp = experiment_from_params(params)
    prep = prepare(exp, progress=False)
    base = base_for_seed(prep, 0, progress=False)
    return exp, prep, base


def test_params_files_parse():
    for name, dataset in (("tiny", None), ("default", "flowers17"), ("paper", "stl10")):
        exp = experiment_from_params(load_params(resolve(f"params/{name}.yaml")), dataset)
        assert exp.methods == METHODS
    exp = experiment_from_params(load_params(resolve("params/default.yaml")), "flowers17")
    assert exp.run.data.max_per_class == 64 and exp.run.data.name == "flowers17"
    assert experiment_from_params(load_params(resolve("params/paper.yaml")), "stl10").run.data.image_size == 96


def test_unknown_parameter_section_is_an_error():
    with pytest.raises(ValueError, match="lvww: unknown key; did you mean 'lvw'"):
        experiment_from_params({"lvww": {}})
    with pytest.raises(ValueError, match="lvw.beta_aling: unknown key; did you mean 'beta_align'"):
        experiment_from_params({"lvw": {"beta_aling": 1}})


def test_base_model_learns_and_maps_are_normalised(tiny):
    _, prep, base = tiny
    # 16 synthetic images per class; val_fraction 0.15 carves round(2.4) = 2 per class
    assert prep.train_feats.shape[:2] == (42, 2) and prep.train_feats.dtype == torch.float16
    assert prep.val_feats.shape[:2] == (6, 2) and base.val_cams.shape[:2] == (6, 2)
    assert base.history[-1]["train_acc"] > 0.6  # 3 classes: chance is 1/3
    assert base.train_cams.shape[:2] == (42, 2)
    assert base.test_cams.min() >= 0 and base.test_cams.max() <= 1 + 1e-6


@pytest.mark.parametrize("method", METHODS)
def test_every_method_runs_and_reports_metrics(tiny, method):
    _, prep, base = tiny
    result = run_method(prep, base, method, seed=0, progress=False)
    assert 0 <= result["accuracy"] <= 1
    assert 0 <= result["iou"] <= 1 and len(result["per_image_iou"]) == len(prep.test_labels)
    assert {"iou_q50", "iou_q90"} <= set(result)
    if method == "base":
        assert result["iou"] == pytest.approx(1.0)  # its own attention, computed, not assumed
    if method == "srae":
        assert {"F_reg", "F_cls"} <= set(result["faithfulness"])
        assert {"O1", "O2"} <= set(result["orthogonality"])


def test_results_are_cached_and_tables_build(tiny, monkeypatch):
    _, prep, base = tiny
    first = run_method(prep, base, "lvw", seed=0, progress=False)

    def fail(*args, **kwargs):
        raise AssertionError("a cached method was retrained")

    monkeypatch.setattr("lvwlib.experiment.stages.fit_method", fail)
    again = run_method(prep, base, "lvw", seed=0, progress=False)
    assert again["accuracy"] == first["accuracy"]
    rows = [run_method(prep, base, m, seed=0, progress=False) for m in ("base", "lvw")]
    long = long_rows("imagenette", rows, registry.labels())
    md = table1_markdown(summarise(long))
    assert "STL10" in md and "| LVW " in md


def test_changed_lvw_config_retrains(tiny):
    import dataclasses

    exp, prep, base = tiny
    first = run_method(prep, base, "lvw", seed=0, progress=False)
    changed = dataclasses.replace(exp, run=dataclasses.replace(exp.run, lvw=dataclasses.replace(exp.run.lvw, beta_align=3.0)))
    prep2 = dataclasses.replace(prep, exp=changed)
    second = run_method(prep2, base, "lvw", seed=0, progress=False)
    assert second["history"] != first["history"]
