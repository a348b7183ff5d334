"""``make reproduce`` on a user's own photo folder, end to end, on tiny parameters.

Three runs, started together, are shared by every test of this module (a few minutes in all):

* ``folder_run``: the whole ``make reproduce`` (analyses included) on a folder under a path
  with a space (``My Photos/food``: an accented class folder, ``.JPG``, ``.DS_Store``, an
  EXIF-rotated photo, 4-pixel and 1600-pixel images; see user_folders.py), results into a
  folder with a space, 1 thread per cell;
* ``two_runs``: two more ``make reproduce`` (``ANALYSES=0``) on a symlink to the same
  folder, sharing one cache, 2 threads per cell: another thread count than ``folder_run``.

The tests check that the user's folder is untouched (paths, sizes, mtimes), that every output
lies under RESULTS named by the folder, that the analyses needing a named dataset say why they
are skipped, that the concurrent runs give identical tables and an intact cache, and that
``make compare`` sets the 2-thread table beside the 1-thread one, cell by cell.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from user_folders import make_user_folder, snapshot

from lvwlib.core.config import load_params
from lvwlib.experiment.names import results_name
from lvwlib.experiment.uptodate import STAMP_NAME
from lvwlib.store.cache import cache_key
from lvwlib.store.paths import project_root, resolve

pytestmark = pytest.mark.slow
TIMEOUT_S = 1500  # a tiny make reproduce takes one to three minutes on 2 busy cores


class User:
    """The user's folder, its snapshot before any run, and the environment of the runs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.folder = make_user_folder(root)
        self.before = snapshot(self.folder)
        self.env = {**os.environ, "LVW_CACHE": str(root / "lvw cache"), "MAKEFLAGS": ""}

    def params(self, name: str, cache: str) -> Path:
        """params/tiny.yaml with its cache at ``root/<cache>`` (a space in the path, too)."""
        params = load_params(resolve("params/tiny.yaml"))
        params["cache_dir"] = str(self.root / cache)
        path = self.root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(params, allow_unicode=True))
        return path

    def make(self, *args: str, log: Path) -> subprocess.Popen:
        """``make <args>`` in the project root, output to ``log`` (a file: nobody must read a pipe)."""
        with log.open("a") as out:
            return subprocess.Popen(["make", *args], cwd=project_root(), env=self.env, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)


def _wait(proc: subprocess.Popen, log: Path) -> str:
    try:
        proc.wait(timeout=TIMEOUT_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
    text = log.read_text()
    assert proc.returncode == 0, text[-4000:]
    return text


@pytest.fixture(scope="module")
def user(tmp_path_factory) -> User:
    user = User(tmp_path_factory.mktemp("user"))
    # once, before runs in parallel: they would race to (re)install the package and link data/
    subprocess.run(["make", "venv", "data"], cwd=project_root(), env=user.env, check=True, capture_output=True)
    return user


@pytest.fixture(scope="module")
def runs(user: User) -> dict:
    """The three runs, started together (independent but for the shared cache of the two)."""
    link = user.root / "food link"
    link.symlink_to(user.folder, target_is_directory=True)
    shared = user.params("shared", "shared cache")
    started = {
        "folder_run": user.make("reproduce", f"DATASETS={user.folder}", f"PARAMS={user.params('tiny', 'tiny cache')}",
                                f"RESULTS={user.root / 'my results'}", "THREADS=1", log=user.root / "folder_run.log"),
        **{name: user.make("reproduce", f"DATASETS={link}", f"PARAMS={shared}", f"RESULTS={user.root / name}",
                           "ANALYSES=0", "WORKERS=1", "THREADS=2", log=user.root / f"{name}.log")
           for name in ("run_a", "run_b")},
    }
    start, seconds = time.perf_counter(), {}
    while len(seconds) < len(started) and time.perf_counter() - start < TIMEOUT_S:
        seconds |= {name: time.perf_counter() - start for name, proc in started.items()
                    if name not in seconds and proc.poll() is not None}
        time.sleep(0.5)
    logs = {name: _wait(proc, user.root / f"{name}.log") for name, proc in started.items()}
    return {"logs": logs, "seconds": seconds}


@pytest.fixture(scope="module")
def folder_run(user: User, runs: dict) -> dict:
    return {"results": user.root / "my results", "log": runs["logs"]["folder_run"]}


@pytest.fixture(scope="module")
def two_runs(user: User, runs: dict) -> dict:
    return {"results": [user.root / "run_a", user.root / "run_b"], "cache": user.root / "shared cache"}


def test_the_users_folder_is_never_written(user, runs):
    assert snapshot(user.folder) == user.before
    print("three make reproduce at once, finished after (s):", {k: round(v) for k, v in runs["seconds"].items()})


def test_every_output_is_under_results_named_by_the_folder(user, folder_run):
    results, name = folder_run["results"], results_name(str(user.folder))
    assert name.startswith("food-")
    assert sorted(p.name for p in (results / "notebooks").iterdir()) == sorted(
        [f"01_base_model_{name}.ipynb", f"02_lvw_{name}.ipynb", "03_table1.ipynb", "06_figure2.ipynb",
         "10_report.ipynb", "11_faithfulness.ipynb"])
    # Figure 2 runs on the user's folder; the report too
    assert {"figure2.png", "figure2.pdf", "figure2_words.csv", "run_figure2.json"} <= {
        p.name for p in (results / name).iterdir()}
    assert (results / "README.md").is_file() and (results / "claims.csv").is_file()
    assert (results / STAMP_NAME).is_file()
    folders = {p.name for p in results.iterdir() if p.is_dir()}
    assert folders == {name, "notebooks"}, folders
    table = pd.read_csv(results / "table1.csv")
    assert set(table["dataset"]) == {name}
    # the analyses that need a named dataset say so, and why
    for notebook, key in (("07_k_sweep", "k_dataset"), ("08_visual_words", "words_dataset"),
                          ("09_unseen_synthetic", "unseen")):
        assert f"skipped {notebook}: its dataset" in folder_run["log"]
        assert f"(params analyses.{key}) is not among this run's datasets ({user.folder})" in folder_run["log"]


def test_a_warm_rerun_on_the_same_paths_is_up_to_date(user, folder_run):
    log = user.root / "warm.log"
    proc = user.make("reproduce", f"DATASETS={user.folder}", f"PARAMS={user.root / 'tiny.yaml'}",
                     f"RESULTS={folder_run['results']}", "THREADS=1", log=log)
    text = _wait(proc, log)
    assert f"{folder_run['results']}: up to date" in text
    assert snapshot(user.folder) == user.before


def test_two_runs_at_once_share_the_cache_and_agree(two_runs):
    a, b = (results / "table1.csv" for results in two_runs["results"])
    assert a.read_bytes() == b.read_bytes()
    cache = two_runs["cache"]
    assert any(cache.rglob("*.pt")), "the runs cached nothing"
    for meta in cache.rglob("*.json"):  # every record: whole, with its value, and this entry's
        record = json.loads(meta.read_text())
        values = [p for p in meta.parent.iterdir() if p.stem == meta.stem and p.suffix != ".json"]
        assert len(values) == 1, f"{meta} has no value"
        if {"inputs", "provenance"} <= set(record):  # an entry of lvwlib.store.cache.cached: keyed by its inputs
            assert cache_key(record["inputs"]) == meta.stem, meta
    for value in cache.rglob("*.pt"):  # every value loads; where its folder keeps records, it has one
        torch.load(value, map_location="cpu", weights_only=False)
        if any(value.parent.glob("*.json")):
            assert value.with_suffix(".json").is_file(), f"{value} has no record"
    leftovers = [p for p in cache.rglob("*") if p.name.endswith(".tmp")]
    leftovers += [p for results in two_runs["results"] for p in results.rglob("*") if p.name.endswith((".tmp", ".part.ipynb"))]
    assert leftovers == []


def test_compare_sets_a_rerun_on_other_threads_beside_the_reference(user, folder_run, two_runs):
    rerun, reference = two_runs["results"][0], folder_run["results"]
    log = user.root / "compare.log"
    text = _wait(user.make("compare", f"RESULTS={rerun}", f"REFERENCE={reference}", log=log), log)
    cells = pd.read_csv(rerun / "compare_table1.csv")
    expected = set()
    for table in (pd.read_csv(reference / "table1.csv"), pd.read_csv(rerun / "table1.csv")):
        for metric in ("accuracy", "iou"):
            rows = table.dropna(subset=[metric])
            expected |= {(d, m, metric) for d, m in zip(rows["dataset"], rows["method"], strict=True)}
    assert set(zip(cells["dataset"], cells["method"], cells["metric"], strict=True)) == expected
    assert len(cells) == len(expected)
    # one seed on tiny parameters: a cell is identical or has no spread to lie within
    assert set(cells["status"]) <= {"identical", "no spread (one seed)"}, cells
    for r in cells.itertuples():
        assert f"| {r.method}" in text  # printed
    print(cells[["method", "metric", "mean_committed", "mean_rerun", "difference", "status"]].to_string())
