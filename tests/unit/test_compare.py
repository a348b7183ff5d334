"""The rerun comparison (lvwlib.paper.compare) on hand-made tables; on real tiny reruns in
test_user_runs.py."""

from __future__ import annotations

import pandas as pd
import pytest

from lvwlib.paper.compare import compare_table1, main, read_table
from lvwlib.store.paths import project_root


def _long(rows: dict[tuple[str, str], list[tuple[float, float]]]) -> pd.DataFrame:
    """{(dataset, method): [(accuracy, iou) per seed]} -> a long Table 1."""
    return pd.DataFrame([{"dataset": d, "method": m, "seed": s, "accuracy": a, "iou": i}
                         for (d, m), seeds in rows.items() for s, (a, i) in enumerate(seeds)])


REFERENCE = _long({
    ("imagenette", "LVW"): [(0.92, 0.75), (0.93, 0.76), (0.94, 0.77)],  # sd 0.01 for both metrics
    ("imagenette", "Random map"): [(float("nan"), 0.33)],  # no accuracy; one seed
    ("imagewoof", "LVW"): [(0.85, 0.80), (0.86, 0.81)],
})


def test_every_cell_with_its_difference_and_whether_it_lies_within_the_spread():
    rerun = _long({
        ("imagenette", "LVW"): [(0.95, 0.76), (0.96, 0.76), (0.97, 0.76)],  # accuracy +3 sd, IoU identical
        ("imagenette", "Random map"): [(float("nan"), 0.34)],
        ("flowers17", "LVW"): [(0.8, 0.7)],
    })
    cells = compare_table1(REFERENCE, rerun).set_index(["dataset", "method", "metric"])
    assert len(cells) == 7  # 2 + 1 + 2 committed cells, 2 only in the rerun; Random map accuracy absent
    acc = cells.loc[("imagenette", "LVW", "accuracy")]
    assert acc["difference"] == pytest.approx(0.03) and acc["sd_committed"] == pytest.approx(0.01)
    assert acc["status"] == "OUTSIDE spread" and not acc["within_spread"]
    assert cells.loc[("imagenette", "LVW", "iou"), "status"] == "identical"
    assert cells.loc[("imagenette", "Random map", "iou"), "status"] == "no spread (one seed)"
    assert cells.loc[("imagewoof", "LVW", "accuracy"), "status"] == "only in the committed table"
    assert cells.loc[("flowers17", "LVW", "iou"), "status"] == "only in the rerun"
    nearby = compare_table1(REFERENCE, _long({("imagenette", "LVW"): [(0.93, 0.751), (0.94, 0.76)]}))
    assert nearby.set_index(["dataset", "method", "metric"]).loc[("imagenette", "LVW", "iou"), "status"] == "within spread"


def test_command_writes_and_prints_every_cell(tmp_path, capsys):
    (tmp_path / "ref").mkdir()
    (tmp_path / "rerun").mkdir()
    REFERENCE.to_csv(tmp_path / "ref" / "table1.csv", index=False)
    REFERENCE.assign(iou=REFERENCE["iou"] + 0.001).to_csv(tmp_path / "rerun" / "table1.csv", index=False)
    claims = pd.DataFrame({"claim": ["a", "b"], "verdict": ["holds", "partly"]})
    claims.to_csv(tmp_path / "ref" / "claims.csv", index=False)
    claims.assign(verdict=["holds", "inconclusive"]).to_csv(tmp_path / "rerun" / "claims.csv", index=False)
    assert main([str(tmp_path / "rerun"), "--reference", str(tmp_path / "ref")]) == 0
    out = capsys.readouterr().out
    assert out == (tmp_path / "rerun" / "compare_table1.md").read_text()
    written = pd.read_csv(tmp_path / "rerun" / "compare_table1.csv")
    assert len(written) == 5 and set(written["status"]) == {"identical", "within spread", "no spread (one seed)"}
    assert "## imagenette" in out and "## imagewoof" in out and "| +0.0010 " in out
    assert "| b       | partly" in out and "inconclusive" in out and "NO" in out
    assert main([str(tmp_path / "missing"), "--reference", str(tmp_path / "ref")]) == 1


def test_a_rerun_into_results_is_compared_with_the_last_commit():
    """``make reproduce`` then ``make compare`` (both on results/): the reference is results/ as committed."""
    if not (project_root() / ".git").exists():
        pytest.skip("not a git checkout")
    committed = read_table(project_root() / "results", "table1.csv", from_git=True)
    assert committed is not None and {"dataset", "method", "seed", "accuracy", "iou"} <= set(committed)
    assert read_table(project_root() / "results", "no_such_table.csv", from_git=True) is None
