"""``python -m lvwlib launch`` (the torchrun entry, here one CPU process) goes through the runner's
stages and keys: its trained models open with ``load_model`` and a later run trains nothing.
Several gloo processes: tests/distributed."""

from __future__ import annotations

import json

import pytest

from lvwlib.__main__ import main as lvwlib_main
from lvwlib.core.config import load_params
from lvwlib.experiment import stages
from lvwlib.experiment.config import experiment_from_params
from lvwlib.experiment.models import available_models, load_model
from lvwlib.experiment.runner import run_all
from lvwlib.store.paths import resolve


def test_a_model_trained_by_launch_is_found_by_load_model(tmp_path, monkeypatch):
    out, cache = tmp_path / "rows.json", tmp_path / "cache"
    status = lvwlib_main(["launch", "--params", "params/tiny.yaml", "--dataset", "synthetic", "--methods", "base,lvw",
                          "--out", str(out), "--set", f"cache_dir={cache}", "--set", "device=cpu"])
    assert status == 0
    data = json.loads(out.read_text())
    assert data["world_size"] == 1
    rows = {r["method"]: r for r in data["rows"]}
    assert set(rows) == {"base", "lvw"}
    assert {m["method"] for m in available_models(cache)} == {"base", "lvw"}

    params = {**load_params(resolve("params/tiny.yaml")), "cache_dir": str(cache), "device": "cpu"}
    exp = experiment_from_params({**params, "methods": ["base", "lvw"]}, "synthetic")
    prep = stages.prepare(exp, progress=False)
    model = load_model(params, "synthetic", "lvw", 0)
    logits, maps, ids = model.explain(prep.test_feats[:, 0].float(), exp.run.eval.top_m)
    assert (logits.argmax(1) == prep.test_labels).float().mean().item() == pytest.approx(rows["lvw"]["accuracy"])
    assert ids.shape == maps.shape[:2] and model.words is not None

    def no_training(*args, **kwargs):
        raise AssertionError("launch's artefacts were not found under the runner's keys")

    monkeypatch.setattr(stages, "fit_method", no_training)
    again = {r["method"]: r for r in run_all(exp, progress=False)}
    assert json.loads(json.dumps(again)) == rows


def test_the_command_line_lists_its_commands(capsys):
    assert lvwlib_main([]) == 2
    text = capsys.readouterr().err
    assert all(command in text for command in ("reproduce", "run", "launch", "calibrate", "compare", "schema", "names", "uptodate"))
    assert lvwlib_main(["names", "name", "imagenette"]) == 0
    assert capsys.readouterr().out.strip() == "imagenette"
