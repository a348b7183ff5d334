"""Params checked at load: one error naming the file and key, before any computation."""

from __future__ import annotations

import pytest
import yaml

from lvwlib.experiment.config import experiment_from_params, load_experiment
from lvwlib.experiment.schema import ConfigError, check_params, main


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"lvw": {"lr_wrods": 1e-3}}, "lvw.lr_wrods: unknown key; did you mean 'lr_words'"),
        ({"evl": {}}, "evl: unknown key; did you mean 'eval'"),
        ({"lvw": {"joint_epochs": "ten"}}, "lvw.joint_epochs: Input should be a valid integer"),
        ({"lvw": {"tail_init": "bsae"}}, "lvw.tail_init: Input should be 'imagenet' or 'base'"),
        ({"eval": {"quantile": 101}}, "eval.quantile: Input should be less than or equal to 100"),
        ({"eval": {"quantiles": [50, -1]}}, "eval.quantiles.1: Input should be greater than or equal to 0"),
        ({"methods": ["lvw", "protonet"]}, "methods.1: Input should be 'base'"),
        ({"backbone": {"name": "resnet34", "tail": "block6"}}, "backbone.tail: 'block6' is not a tail of resnet34"),
        ({"data": {"val_fraction": 1.0}}, "data.val_fraction: Input should be less than 1"),
        ({"datasets": {"flowers17": {"data": {"max_per_clas": 3}}}}, "datasets.flowers17.data.max_per_clas: unknown key"),
        ({"seeds": []}, "seeds: at least one seed"),
    ],
)
def test_bad_params_name_the_key(params, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        experiment_from_params(params, source="params/x.yaml")


def test_every_problem_in_one_error_naming_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"lvw": {"lr_wrods": 1, "beta_align": "x"}, "eval": {"top_m": 0}}))
    with pytest.raises(ConfigError) as err:
        load_experiment(path)
    lines = str(err.value).splitlines()[1:]
    assert len(lines) == 3 and all(str(path) in line for line in lines)
    assert main([str(path)]) == 2


def test_numbers_written_as_strings_by_yaml_are_numbers():
    # yaml 1.1 reads 1e-4 (no dot) as the string "1e-4"
    params = yaml.safe_load("lvw:\n  lr_tail: 1e-4\nprotopnet:\n  separation: -8e-2\n")
    assert params["lvw"]["lr_tail"] == "1e-4"
    exp = experiment_from_params(params)
    assert exp.run.lvw.lr_tail == pytest.approx(1e-4) and isinstance(exp.run.lvw.lr_tail, float)
    assert exp.config("protopnet") == {"separation": pytest.approx(-0.08)}


@pytest.mark.parametrize("name", ["tiny", "default", "paper", "quick", "fidelity"])
def test_shipped_params_are_valid(name):
    from lvwlib.core.config import load_params
    from lvwlib.store.paths import resolve

    check_params(load_params(resolve(f"params/{name}.yaml")), f"params/{name}.yaml")
