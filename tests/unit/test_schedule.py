"""The runner's submission order: longest chains first, datasets interleaved, needs respected."""

from __future__ import annotations

from lvwlib.experiment.config import Experiment
from lvwlib.experiment.runner import Cell, plan, schedule


def _names(cells: list[Cell]) -> list[str]:
    return [c.name for c in cells]


def _plan() -> dict[Cell, tuple[Cell, ...]]:
    exp = Experiment(seeds=(0,), methods=("protopnet", "protopshare", "lvw"))
    return plan({"a": exp, "b": exp})


def test_longest_chain_first_by_dataset_size() -> None:
    # per 1,000 images: features 60, base_model 40, protopnet 115, protopshare 60, lvw 140, so
    # a (1,000 images): protopshare 60, protopnet 115 + 60 = 175, lvw 140, base 40 + 175 = 215,
    # features 275; b (500 images): half of each.
    order = schedule(_plan(), {"a": 1000, "b": 500})
    assert _names(order) == [
        "a - features", "a 0 base_model", "a 0 protopnet", "a 0 lvw",  # 275, 215, 175, 140
        "b - features", "b 0 base_model", "b 0 protopnet", "b 0 lvw",  # 137.5, 107.5, 87.5, 70
        "a 0 protopshare", "b 0 protopshare",  # 60, 30
    ]


def test_equal_datasets_interleave_and_needs_come_first() -> None:
    deps = _plan()
    order = schedule(deps, {"a": 1000, "b": 1000})
    assert _names(order) == [
        "a - features", "b - features", "a 0 base_model", "b 0 base_model", "a 0 protopnet",
        "b 0 protopnet", "a 0 lvw", "b 0 lvw", "a 0 protopshare", "b 0 protopshare",
    ]
    seen: set[Cell] = set()
    for cell in order:
        assert all(need in seen for need in deps[cell]), cell.name
        seen.add(cell)


def test_unknown_method_and_missing_size_get_defaults() -> None:
    deps = {Cell("x", "features"): (), Cell("x", "method", 0, "mine"): (Cell("x", "features"),)}
    assert _names(schedule(deps, {})) == ["x - features", "x 0 mine"]
