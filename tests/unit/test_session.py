"""The one session: where its outputs go, its run record, the analyses settings, variants."""

from __future__ import annotations

import json

import pytest

from lvwlib.core.config import AnalysesConfig, UnseenCase, load_params
from lvwlib.experiment.names import results_name
from lvwlib.store.paths import resolve
from lvwlib.ui import session


@pytest.fixture()
def params(tmp_path):
    params = load_params(resolve("params/tiny.yaml"))
    params["cache_dir"] = str(tmp_path / "cache")
    return params


def test_out_dir_of_a_folder_dataset_is_under_results_never_the_folder(tmp_path, params):
    folder = tmp_path / "My Photos" / "food"
    folder.mkdir(parents=True)
    s = session.open(params, str(folder), results_dir=tmp_path / "results", name="figure2", load=False)
    assert s.out_dir == tmp_path / "results" / results_name(str(folder)) and s.name == results_name(str(folder))
    s.extra["image"] = 3
    path = s.finish({"note": "done"})
    record = json.loads(path.read_text())
    assert path == s.out_dir / "run_figure2.json" and record["image"] == 3 and record["note"] == "done"
    assert "wall_time_s" in record and record["config"]["run"]["data"]["name"] == str(folder)
    assert list(folder.iterdir()) == []  # nothing written into (or next to) the dataset
    assert s.finish() is None  # written once


def test_record_as_a_context_manager(tmp_path, params):
    with session.open(params, "synthetic", results_dir=tmp_path, name="x", load=False) as s:
        s.extra["n"] = 1
    assert json.loads((tmp_path / "synthetic" / "run_x.json").read_text())["n"] == 1
    with pytest.raises(RuntimeError), session.open(params, "synthetic", results_dir=tmp_path, name="y", load=False):
        raise RuntimeError("a failed run")
    assert not (tmp_path / "synthetic" / "run_y.json").exists()  # no record of a failed run


def test_analyses_come_from_the_params(params, tmp_path):
    s = session.open(params, None, results_dir=tmp_path, load=False)
    assert s.analyses == session.read_analyses(params) == AnalysesConfig(
        figure2_dataset="synthetic", k_dataset="synthetic", k_values=(1, 2), words_dataset="synthetic",
        unseen=(UnseenCase("synthetic", ("bar",)),))
    assert s.out_dir == tmp_path
    with pytest.raises(ValueError, match="no dataset"):
        s.prep  # noqa: B018
    del params["analyses"]
    assert session.read_analyses(params) == AnalysesConfig()  # defaults: the paper's setting


def test_unseen_cases_default_and_older_single_case_keys(params):
    from lvwlib.paper.figure5 import unseen_case

    default = AnalysesConfig()
    assert default.figure2_dataset == "food101_10"  # Figure 2 on Food-101, as in the paper
    assert default.unseen_cases() == (UnseenCase("animals22", ("wolf", "bison")),
                                      UnseenCase("imagewoof", ("n02089973", "n02096294")))
    # a params file of the older form (unseen_dataset + unseen_classes) is one case
    params["analyses"] = {"unseen_dataset": "synthetic", "unseen_classes": ["bar"]}
    older = session.read_analyses(params)
    assert older.unseen_cases() == (UnseenCase("synthetic", ("bar",)),)
    # notebook 09's case: the first by default, a dataset's own classes, or the classes given
    assert unseen_case(default) == UnseenCase("animals22", ("wolf", "bison"))
    assert unseen_case(default, "imagewoof") == UnseenCase("imagewoof", ("n02089973", "n02096294"))
    assert unseen_case(default, "imagewoof", ["n02086240"]) == UnseenCase("imagewoof", ("n02086240",))
    with pytest.raises(ValueError, match="no held-out classes for 'flowers17'"):
        unseen_case(default, "flowers17")


def test_variants_change_only_what_leaves_data_and_base_alone(params, tmp_path):
    s = session.open(params, "synthetic", results_dir=tmp_path, load=False)
    with pytest.raises(ValueError, match="not data"):
        s.variant({"data": {"image_size": 64}})
    assert s.with_seed(0) is s and s.with_seed(1).seed == 1
