"""Config round trips and run records."""

from __future__ import annotations

import json

import pytest

from lvwlib.core.config import LVWConfig, RunConfig, from_dict, load_params, replace, to_dict
from lvwlib.store.records import RunRecord, write_json


def test_config_round_trip():
    cfg = RunConfig()
    cfg2 = replace(cfg, data={"holdout_classes": ["a", "b"]}, lvw={"beta_align": 0.0})
    assert cfg2.data.holdout_classes == ("a", "b") and cfg2.lvw.beta_align == 0.0
    assert from_dict(RunConfig, to_dict(cfg2)) == cfg2


def test_unknown_field_names_the_problem():
    with pytest.raises(ValueError, match="unknown LVWConfig field.*bta"):
        from_dict(LVWConfig, {"bta": 1})


def test_load_params_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="parameter file not found"):
        load_params(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ValueError, match="mapping"):
        load_params(bad)


def test_run_record_has_config_commit_versions_and_wall_time(tmp_path):
    with RunRecord(tmp_path, {"x": 1}) as record:
        record.extra = {"accuracy": 0.5}
    data = json.loads((tmp_path / "run.json").read_text())
    assert data["config"] == {"x": 1} and data["accuracy"] == 0.5
    assert data["wall_time_s"] >= 0 and "commit" in data["git"]
    assert data["packages"]["torch"]


def test_run_record_not_written_on_failure(tmp_path):
    with pytest.raises(RuntimeError), RunRecord(tmp_path, {}):
        raise RuntimeError("boom")
    assert not (tmp_path / "run.json").exists()


def test_atomic_write_leaves_no_temp_files(tmp_path):
    write_json(tmp_path / "a.json", {"b": 1})
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
