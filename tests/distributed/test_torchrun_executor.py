"""The runner's ``torchrun`` executor: one ``torchrun -m lvwlib launch --cell`` job per cell, on tiny data.

Cells whose method trains under DDP (the base model, ProtoPNet) run in two gloo processes;
the others (the features, ProtoPShare, which merges the trained ProtoPNet on cached
features) in one. Every model lands under the runner's keys. Skipped in ``make test``
(it launches ``torchrun``); ``make test-distributed`` sets LVW_TEST_DISTRIBUTED=1.
"""

from __future__ import annotations

import io
import os

import pytest

from lvwlib.core.config import CellsConfig, load_params
from lvwlib.experiment.config import experiment_from_params
from lvwlib.experiment.models import load_model
from lvwlib.experiment.runner import Cell, _TorchrunEngine, run_cells
from lvwlib.store.paths import resolve

pytestmark = pytest.mark.skipif(
    os.environ.get("LVW_TEST_DISTRIBUTED") != "1", reason="run by make test-distributed"
)


def test_torchrun_executor_runs_each_cell_in_its_own_job(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    params = {**load_params(resolve("params/tiny.yaml")), "cache_dir": str(tmp_path / "cache"), "device": "cpu",
              "methods": ["base", "protopnet", "protopshare"]}
    exp = experiment_from_params(params, "synthetic")
    cfg = CellsConfig(executor="torchrun", workers=1, nproc_per_node=2, folder=str(tmp_path / "jobs"), poll_s=0.5)
    engine = _TorchrunEngine(cfg)
    assert [engine.processes(c) for c in (Cell("synthetic", "features"), Cell("synthetic", "base_model", 0),
                                          Cell("synthetic", "method", 0, "protopnet"),
                                          Cell("synthetic", "method", 0, "protopshare"))] == [1, 2, 2, 1]
    out = io.StringIO()
    report = run_cells(exp, cfg, out=out)
    assert report.ok, out.getvalue() + "".join(p.read_text()[-3000:] for p in (tmp_path / "jobs").glob("*.log"))
    rows = {r["method"]: r for r in report.results()}
    assert set(rows) == {"base", "protopnet", "protopshare"} and rows["base"]["iou"] == pytest.approx(1.0)
    for method in rows:
        model = load_model(params, "synthetic", method, 0)
        assert model.method == method
