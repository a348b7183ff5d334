"""The calibration on tiny data: variants run as experiments of the runner's plan, validation numbers only."""

from __future__ import annotations

import pytest
import yaml

from lvwlib.core.config import load_params
from lvwlib.experiment.calibrate import calibrate, calibration_table, main, training_curve
from lvwlib.store.paths import resolve


@pytest.fixture()
def params(tmp_path):
    return {**load_params(resolve("params/tiny.yaml")), "cache_dir": str(tmp_path / "cache")}


def test_variants_give_validation_rows_beside_the_base_model(params):
    lines: list[str] = []
    variants = {"defaults": {}, "no_align": {"lvw": {"beta_align": 0.0}}}
    rows = calibrate(params, variants, ["synthetic"], [0], ("lvw",), log=lines.append)
    assert list(rows["method"]) == ["base", "lvw"] * 2  # the base model's own row first
    rows = rows[rows["method"] == "lvw"]
    assert list(rows["variant"]) == ["defaults", "no_align"]
    assert rows["val_accuracy"].between(0, 1).all() and rows["val_iou"].between(0, 1).all()
    assert (rows["gap"] == rows["val_accuracy"] - rows["base_val_accuracy"]).all()
    assert rows["base_val_accuracy"].nunique() == 1  # one base model: the variants change LVW only
    assert any("synthetic/no_align 0 lvw:" in line for line in lines)  # the runner's progress lines
    assert not any(c.startswith("test") or c in ("accuracy", "iou") for c in calibration_table(rows).columns)


def test_a_training_curve_and_the_command_line(params, tmp_path):
    curve = training_curve(params, "synthetic", "prototree", seed=0, epochs=2, eval_every=1)
    assert list(curve["epoch"]) == [1, 2] and curve["val_acc_soft"].between(0, 1).all()
    with pytest.raises(ValueError, match="LVW records no training curve; methods that do: prototree"):
        training_curve(params, "synthetic", "lvw", seed=0, epochs=1)
    variants = tmp_path / "variants.yaml"
    variants.write_text("methods: [lvw_noalign]\nvariants: {defaults: {}}\n")
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    out = tmp_path / "out"
    assert main(["--params", str(params_file), "--variants", str(variants), "--datasets", "synthetic",
                 "--out", str(out)]) == 0
    assert (out / "calibration_synthetic.md").read_text().count("lvw_noalign") == 1


def test_trunk_variants_carry_the_validation_border_diagnostic(params):
    spec = load_params(resolve("params/calibration_trunk.yaml"))
    assert list(spec["variants"]) == ["zeros", "reflect", "context", "block6"]
    assert {"lvw", "lvw_noalign", "protopnet"} <= set(spec["methods"])
    lines: list[str] = []
    variants = {k: v for k, v in spec["variants"].items() if k != "block6"}  # Lite0 only: no block6 in tiny
    rows = calibrate(params, variants, ["synthetic"], [0], ("lvw_noalign",), log=lines.append)
    assert list(rows["variant"]) == ["zeros", "zeros", "reflect", "reflect", "context", "context"]
    assert (rows["chance"] == 12 / 16).all()  # the tiny backbone's 4 x 4 grid: 12 border cells
    assert rows["peak_border"].between(0, 1).all()
    base, words = rows[rows["method"] == "base"], rows[rows["method"] == "lvw_noalign"]
    assert base["word_border"].isna().all() and words["word_border"].between(0, 1).all()
    assert (base["gap"] == 0).all()
    assert any("synthetic context lvw_noalign seed 0:" in line and "peaks on the border" in line for line in lines)
    table = calibration_table(rows)
    assert {"word_border", "peak_border", "chance"} <= set(table.columns) and len(table) == 6


def test_prototree_variants_record_every_strategy(params):
    # Table 1's (the val_accuracy) is the headline strategy's; the three are recorded beside it.
    variants = {"defaults": {}, "official": {"prototree": {"add_on": "official", "headline": "soft",
                                                           "warm_bn_frozen": False, "prune_root_children": False}}}
    rows = calibrate(params, variants, ["synthetic"], [0], ("prototree",), log=lambda s: None)
    tree = rows[rows["method"] == "prototree"]  # the base rows (border diagnostic) come first
    defaults, official = tree.iloc[0], tree.iloc[1]
    assert defaults["val_accuracy"] == pytest.approx(defaults["val_acc_greedy"])
    assert official["val_accuracy"] == pytest.approx(official["val_acc_soft"])
    for column in ("val_acc_sample_max", "val_fidelity_greedy", "val_fidelity_sample_max", "val_near_uniform_greedy"):
        assert tree[column].between(0, 1).all()
    assert "val_acc_soft" in calibration_table(rows).columns


def test_protopshare_curve_trains_its_protopnet_first_and_has_a_row_per_merge_step(params):
    # its ProtoPNet (Method.needs) is trained by the curve itself; step 0 is that ProtoPNet
    values = {**params, "protopshare": {"merge_fraction": 0.2, "finetune_epochs": 1, "joint_epochs": 1}}
    curve = training_curve(values, "synthetic", "protopshare", seed=0, epochs=2)
    assert list(curve["step"]) == [0, 1, 2] and curve["val_accuracy"].between(0, 1).all()
    assert curve["words_after"].is_monotonic_decreasing and curve["joint_loss"].iloc[1:].notna().all()
