"""The cell runner (lvwlib.experiment.runner) on tiny synthetic data: plan, executors, progress, failures."""

from __future__ import annotations

import io
import math
import os
import re
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from lvwlib.core.config import CellsConfig, load_params
from lvwlib.experiment import keys, models
from lvwlib.experiment.config import experiment_from_params
from lvwlib.experiment.runner import (
    Cell,
    _InlineEngine,
    _SubmititEngine,
    cells_config,
    main,
    plan,
    run_all,
    run_cells,
)
from lvwlib.methods import registry
from lvwlib.store.paths import resolve

METHODS = registry.names()

LINE = re.compile(r"^\[(\d+)/(\d+)\] (.+?): (.+), (\d+) cells left$")


def tiny_params(cache_dir: Path, **changes: Any) -> dict[str, Any]:
    params = load_params(resolve("params/tiny.yaml"))
    params["cache_dir"] = str(cache_dir)
    params.update(changes)
    return params


def tiny(cache_dir: Path, **changes: Any):
    """The experiment of tiny.yaml on the synthetic set (named "synthetic" in the plan)."""
    return experiment_from_params(tiny_params(cache_dir, **changes), "synthetic")


def progress_lines(text: str) -> list[re.Match]:
    return [m for m in map(LINE.match, text.splitlines()) if m]


def same(a: Any, b: Any, path: str = "") -> None:
    """Equal nested results; floats to 1e-6 (thread counts may reorder float sums).

    Wall times (``*_seconds``, e.g. ProtoTree's train_seconds) are not results and may differ.
    """
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), path
        for k in a:
            if not str(k).endswith("seconds"):
                same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and not math.isnan(a):
        assert b == pytest.approx(a, rel=1e-6, abs=1e-6), path
    else:
        assert a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b)), path


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """Every cell of tiny.yaml (two seeds) with 2 local worker processes x 1 thread."""
    params = tiny_params(tmp_path_factory.mktemp("cells_cache"), seeds=[0, 1])
    out = io.StringIO()
    report = run_cells(experiment_from_params(params, "synthetic"), CellsConfig(workers=2, threads=1), out=out)
    return params, report, out.getvalue()


def test_plan_orders_stages_and_protopshare_after_protopnet() -> None:
    deps = plan(tiny(Path("unused"), seeds=[0, 1]))
    assert len(deps) == 1 + 2 * (1 + len(METHODS))
    features = Cell("synthetic", "features")
    assert deps[features] == ()
    assert deps[Cell("synthetic", "base_model", 1)] == (features,)
    assert deps[Cell("synthetic", "method", 1, "lvw")] == (Cell("synthetic", "base_model", 1),)
    assert deps[Cell("synthetic", "method", 0, "protopshare")] == (
        Cell("synthetic", "base_model", 0), Cell("synthetic", "method", 0, "protopnet"))
    # without protopnet in the run, protopshare trains it itself and waits for nothing more
    no_pnet = plan(tiny(Path("unused"), methods=["protopshare"]))
    assert no_pnet[Cell("synthetic", "method", 0, "protopshare")] == (Cell("synthetic", "base_model", 0),)


def test_local_runner_matches_sequential_run_all(local_run, tmp_path) -> None:
    params, report, _ = local_run
    assert report.ok, report.failed
    # the runner's caches now serve run_all without training anything ...
    from_cells = run_all(experiment_from_params(params), progress=False)
    # ... and they hold what a sequential run in this process computes from scratch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        sequential = run_all(experiment_from_params({**params, "cache_dir": str(tmp_path)}), progress=False)
    finally:
        torch.set_num_threads(threads)
    assert [(r["method"], r["seed"]) for r in from_cells] == [(m, s) for s in (0, 1) for m in METHODS]
    same(from_cells, sequential)


def test_inline_executor_runs_the_same_plan_in_this_process(local_run) -> None:
    params, report, _ = local_run
    out = io.StringIO()
    # use_cache=False: the inline executor runs every cell (loading what the pool cached), no lookup answers it
    inline = run_cells(experiment_from_params(params, "synthetic"), CellsConfig(executor="inline"), out=out,
                       use_cache=False)
    assert inline.ok and list(inline.outcomes) == list(report.outcomes)  # every cell, in plan order
    assert "on inline: 1 workers" in out.getvalue()
    same(inline.results(), report.results())  # loaded from the caches the process pool filled


def test_progress_lines_count_down_and_follow_dependencies(local_run) -> None:
    params, report, text = local_run
    lines = progress_lines(text)
    total = len(plan(experiment_from_params(params, "synthetic")))
    assert [int(m[1]) for m in lines] == list(range(1, total + 1))
    assert all(int(m[2]) == total and int(m[5]) == total - int(m[1]) for m in lines)
    methods = [m for m in lines if m[3].split()[-1] in METHODS]
    assert len(methods) == 2 * len(METHODS)
    assert all(re.fullmatch(r"\d+\.\d s \(accuracy [\d.]+, iou [\d.]+\)", m[4]) for m in methods)
    finished_at = {m[3]: int(m[1]) for m in lines}
    for cell, needs in plan(experiment_from_params(params, "synthetic")).items():
        assert all(finished_at[d.name] < finished_at[cell.name] for d in needs), cell


def test_submitit_local_executor_runs_the_same_cells(tmp_path) -> None:
    exp = tiny(tmp_path / "cache", methods=["base", "lvw"])
    cfg = CellsConfig(executor="submitit-local", workers=2, folder=str(tmp_path / "jobs"), poll_s=0.2)
    out = io.StringIO()
    report = run_cells(exp, cfg, out=out)
    assert report.ok, out.getvalue()
    finished = [m[3] for m in progress_lines(out.getvalue())]
    assert finished[:2] == ["synthetic - features", "synthetic 0 base_model"]  # each needs the one before
    # the two method cells run at once (2 workers): either may finish first
    assert sorted(finished[2:]) == ["synthetic 0 base", "synthetic 0 lvw"]
    assert list((tmp_path / "jobs").glob("*_result.pkl")), "submitit wrote no job results"
    lvw = report.outcomes[Cell("synthetic", "method", 0, "lvw")]
    assert 0 <= lvw.summary["accuracy"] <= 1 and 0 <= lvw.summary["iou"] <= 1


def test_failing_cell_fails_the_run_after_the_others(tmp_path, capsys) -> None:
    # a NaN loss coefficient passes the params schema (NaN is a float) but makes protopnet's
    # words NaN, which push (or the IoU check) refuses; the base rows are untouched
    params = tiny_params(tmp_path / "cache", methods=["base", "protopnet", "protopshare"])
    params["protopnet"] = {**params.get("protopnet", {}), "alpha_cluster": float("nan")}
    params_file = tmp_path / "bad.yaml"
    params_file.write_text(yaml.safe_dump(params))
    status = main(["--params", str(params_file), "--workers", "2", "--threads", "1"])
    text = capsys.readouterr().out
    assert status == 1
    assert "synthetic 0 protopnet: FAILED" in text
    assert "Traceback" in text and "ValueError:" in text  # its traceback (NaN words: push or IoU refuses)
    assert "synthetic 0 protopshare: skipped (needs synthetic 0 protopnet, which failed)" in text
    assert re.search(r"synthetic 0 base: [\d.]+ s \(accuracy", text)  # the healthy cell still ran
    assert "5 cells in" in text and "2 cells failed or skipped" in text


def test_cells_config_from_params_and_flags() -> None:
    params = {"cells": {"executor": "slurm", "partition": "cpu", "threads": 2, "slurm_additional": {"qos": "low"}}}
    cfg = cells_config(params, threads=4, workers=None)
    assert (cfg.executor, cfg.partition, cfg.threads, cfg.workers) == ("slurm", "cpu", 4, 0)
    assert cfg.slurm_additional == {"qos": "low"}
    assert CellsConfig(workers=3).max_workers == 3 and CellsConfig(threads=64).max_workers == 1
    # the cells section is not an experiment parameter and changes no cache key
    assert experiment_from_params(params) == experiment_from_params({})
    with pytest.raises(ValueError, match="cells.executor must be one of"):
        CellsConfig(executor="pbs")
    with pytest.raises(ValueError, match="unknown CellsConfig field"):
        cells_config({"cells": {"worker": 2}})


def test_slurm_options_reach_submitit(tmp_path, monkeypatch) -> None:
    # submitit's Slurm executor only checks that srun exists; a stub lets us see its sbatch options
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    cfg = CellsConfig(executor="slurm", folder=str(tmp_path / "jobs"), partition="cpu", threads=4,
                      mem_gb=8, gpus_per_node=1, timeout_min=30, slurm_additional={"qos": "low"})
    options = _SubmititEngine(cfg).executor._executor.parameters
    assert options == {"job_name": "lvw-cell", "time": 30, "cpus_per_task": 4, "gpus_per_node": 1,
                       "mem": "8GB", "partition": "cpu", "additional_parameters": {"qos": "low"}}


def test_a_warm_run_answers_every_cell_from_the_cache_without_a_worker(local_run) -> None:
    params, report, _ = local_run

    def no_engine(cfg: CellsConfig) -> Any:
        raise AssertionError("a run whose every cell is cached started an executor")

    out = io.StringIO()
    warm = run_cells(experiment_from_params(params, "synthetic"), CellsConfig(workers=2, threads=1), out=out,
                     engine=no_engine)
    assert warm.ok and list(warm.outcomes) == list(report.outcomes)
    same(warm.results(), report.results())  # the cached rows, as the pool's cells returned them
    lines = progress_lines(out.getvalue())
    assert len(lines) == len(report.outcomes)
    assert all(m[4].startswith("cached") for m in lines), out.getvalue()
    methods = [m for m in lines if m[3].split()[-1] in METHODS]
    assert all(re.fullmatch(r"cached \(accuracy [\d.]+, iou [\d.]+\)", m[4]) for m in methods)


def test_only_the_cells_the_cache_cannot_answer_run(tmp_path) -> None:
    exp = tiny(tmp_path / "cache", methods=["base", "lvw"])
    assert run_cells(exp, CellsConfig(executor="inline"), out=io.StringIO()).ok
    # the stored lvw model is gone (its result is still cached): that cell must run to store it again
    _, cams = keys.base_inputs(exp, keys.feature_inputs(exp), 0)
    model = models.model_path(tmp_path / "cache", keys.method_inputs(exp, cams, "lvw", 0))
    model.unlink()
    submitted: list[Cell] = []

    class Recording(_InlineEngine):
        def submit(self, cell: Cell, exp: Any, threads: int) -> Any:
            submitted.append(cell)
            return super().submit(cell, exp, threads)

    report = run_cells(exp, CellsConfig(executor="inline"), out=io.StringIO(), engine=lambda cfg: Recording())
    assert report.ok and submitted == [Cell("synthetic", "method", 0, "lvw")]
    assert model.exists()
    # without the cache lookup every cell runs (in its worker, loading what is cached)
    submitted.clear()
    assert run_cells(exp, CellsConfig(executor="inline"), out=io.StringIO(), engine=lambda cfg: Recording(),
                     use_cache=False).ok
    assert len(submitted) == len(plan(exp))
