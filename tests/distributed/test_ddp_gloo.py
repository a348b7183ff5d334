"""Two CPU processes (PyTorch DDP, gloo backend) against one, on tiny data: ``make test-distributed``.

Both runs see the same global batches (every rank draws the same epoch plan and
takes its share of each global batch, with the loss weights of
:func:`lvwlib.core.batches.shard`), so they differ only by floating-point rounding:
gradients are summed across ranks in another order, and per-rank batches of 4
instead of 8 images change the convolution's blocking. Tolerances, after 5
epochs of training and 2 pushes:

- words after the last push: max |difference| <= 1e-4 (observed ~5e-6), and
  every word pushed onto the same training image, row and column;
- test accuracy: equal within one test image (observed equal);
- IoU coverage: within 0.01 (observed ~2e-4: a 50th-percentile mask can
  flip a few pixels when the maps change in their 6th digit).

A third run (2 processes, same cache) finds every artefact and every
checkpoint and must give the same rows as the second: resume under DDP.
Skipped in ``make test`` (it launches ``torchrun``); ``make test-distributed`` sets
LVW_TEST_DISTRIBUTED=1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lvwlib.core.config import load_params
from lvwlib.experiment.config import experiment_from_params
from lvwlib.experiment.models import load_model

pytestmark = pytest.mark.skipif(
    os.environ.get("LVW_TEST_DISTRIBUTED") != "1", reason="run by make test-distributed"
)

ROOT = Path(__file__).resolve().parents[2]
METHODS = "base,lvw,protopnet"


def _launch(nproc: int, cache: Path, out: Path) -> dict:
    args = ["-m", "lvwlib", "launch", "--params", "params/tiny.yaml", "--dataset", "synthetic",
            "--methods", METHODS, "--out", str(out), "--set", f"cache_dir={cache}",
            "--set", "backbone.tail=all", "--set", "device=cpu"]
    if nproc == 1:
        cmd = [sys.executable, *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    data = json.loads(out.read_text())
    assert data["world_size"] == nproc
    return {r["method"]: r for r in data["rows"]}


def _words(cache: Path, method: str) -> torch.Tensor:
    """The words of the model the launch stored, found by load_model (the runner's keys)."""
    params = {**load_params(ROOT / "params/tiny.yaml"), "cache_dir": str(cache), "device": "cpu"}
    params["backbone"] = {**params["backbone"], "tail": "all"}
    return load_model(experiment_from_params(params, "synthetic"), "synthetic", method).module.words.detach()


def test_two_gloo_processes_match_one(tmp_path):
    one = _launch(1, tmp_path / "c1", tmp_path / "one.json")
    two = _launch(2, tmp_path / "c2", tmp_path / "two.json")
    n_test = len(one["base"]["per_image_iou"])
    for method in METHODS.split(","):
        a, b = one[method], two[method]
        assert abs(a["accuracy"] - b["accuracy"]) <= 1.0 / n_test + 1e-9, method
        assert abs(a["iou"] - b["iou"]) <= 0.01, method
        if method == "base":
            continue
        wa, wb = _words(tmp_path / "c1", method), _words(tmp_path / "c2", method)
        assert (wa - wb).abs().max().item() <= 1e-4, method
        where = [(p["image"], p["row"], p["col"]) for p in a["push"]]
        assert where == [(p["image"], p["row"], p["col"]) for p in b["push"]], method
        for ha, hb in zip(a["history"], b["history"], strict=True):
            assert ha["stage"] == hb["stage"] and abs(ha["loss"] - hb["loss"]) <= 1e-3 * max(1.0, abs(ha["loss"]))

    # resume: the same 2-process run again loads everything and reproduces its rows
    again = _launch(2, tmp_path / "c2", tmp_path / "again.json")
    assert again == two
