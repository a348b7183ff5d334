"""``make reproduce`` killed with SIGKILL at several points, rerun, gives the same Table 1.

Drives the real ``make reproduce`` on tiny parameters and the user's own class
folders (PNG files under a temporary folder, given as a path in DATASETS):

* a reference run, uninterrupted, with its own cache;
* a chain of runs sharing one cache and one results folder, each SIGKILLed
  (make, the shells, papermill and its kernel, all at once) when a point is
  reached: the trunk features cached, a training checkpoint written, the table
  written; then a last run to the end.

The last run's ``table1.csv`` must equal the reference's byte for byte (same
seeds, different process history), no partial file (``.tmp`` of atomic writes,
``.part.ipynb`` of papermill) may remain in results or cache, outputs are named
after the folder and under RESULTS, the dataset folder is untouched, and
result files have the umask's permissions.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from PIL import Image

from lvwlib.core.config import load_params
from lvwlib.data import make_synthetic
from lvwlib.experiment.names import results_name
from lvwlib.experiment.uptodate import STAMP_NAME
from lvwlib.store.paths import project_root, resolve

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="kills process trees found via /proc"),
]
TIMEOUT_S = 1500  # one tiny make reproduce (cells + every notebook) takes minutes on 2 busy cores


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            tree.setdefault(int(fields[1]), []).append(int(entry.name))
    return tree


def _descendants(pid: int) -> set[int]:
    tree, found, todo = _children(), set(), [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL make and every process below it, the jupyter kernel included.

    The kernel runs in a session of its own (jupyter_client), so killing the
    process group would orphan it; every process is stopped first, so none
    reacts to another's death (papermill writing the notebook, a kernel
    finishing its cell), then all are killed.
    """
    stopped: set[int] = set()
    while True:  # stop until no new process appears below make
        pids = {proc.pid} | _descendants(proc.pid)
        new = pids - stopped
        if not new:
            break
        for pid in new:
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                pass
        stopped |= new
    for pid in stopped:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=30)
    deadline = time.time() + 30
    while any(Path(f"/proc/{pid}").exists() and "Z" not in _state(pid) for pid in stopped):
        assert time.time() < deadline, "killed processes did not go away"
        time.sleep(0.1)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def _make_reproduce(params: Path, dataset: Path, results: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("a") as out:  # a file, not a pipe: a run nobody reads must not block
        return subprocess.Popen(
            # ANALYSES=0: Table 1 only (Figures 2-5 retrain nothing Table 1 needs and triple the time)
            ["make", "reproduce", f"PARAMS={params}", f"DATASETS={dataset}", f"RESULTS={results}", "ANALYSES=0"],
            cwd=project_root(), env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )


def _run_until(proc: subprocess.Popen, point: Callable[[], bool] | None) -> bool:
    """Wait for the run; kill it as soon as ``point()`` holds. True when it was killed there."""
    deadline = time.time() + TIMEOUT_S
    try:
        while proc.poll() is None:
            if point is not None and point():
                _kill_tree(proc)
                return True
            assert time.time() < deadline, "make reproduce took too long"
            time.sleep(0.05)
        return False
    finally:
        if proc.poll() is None:
            _kill_tree(proc)


def _any(folder: Path, pattern: str) -> Callable[[], bool]:
    return lambda: any(folder.glob(pattern))


def _partial_files(*folders: Path) -> list[Path]:
    return [
        p for folder in folders for p in folder.rglob("*")
        if p.name.endswith((".tmp", ".part.ipynb"))
        # any other hidden file, but the (empty, kept by design) key locks of lvwlib.store.cache and
        # the stamp of a finished run (lvwlib.experiment.uptodate, written last)
        or (p.name.startswith(".") and p.is_file() and not p.name.endswith(".lock") and p.name != STAMP_NAME)
    ]


def _tree(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_killed_reproduce_resumes_to_the_same_table(tmp_path):
    # the user's own class folders: the synthetic shapes as PNG files
    dataset = tmp_path / "my shapes"
    for split, n in (("train", 8), ("test", 4)):
        ds = make_synthetic(n, 32, seed=0, split=split)
        for i in range(len(ds)):
            folder = dataset / split / ds.classes[ds.labels[i]]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(ds.images[i].permute(1, 2, 0).numpy()).save(folder / f"{i:03d}.png")
    dataset_files = _tree(dataset)  # given as is in DATASETS: a path with a space is one dataset

    def params_with_cache(name: str) -> Path:
        params = load_params(resolve("params/tiny.yaml"))
        params["cache_dir"] = str(tmp_path / name)
        # the rows notebooks 01-02 train anyway: the table notebook only reads the cache
        params["methods"] = ["base", "lvw_noalign", "lvw"]
        # the ONNX trunk (tiny.yaml computes eagerly): its export is one more atomic write a kill may hit
        params["backbone"]["runtime"] = "onnx"
        path = tmp_path / f"params_{name}.yaml"
        path.write_text(yaml.safe_dump(params))
        return path

    env = {**os.environ, "LVW_CACHE": str(tmp_path / "lvw_cache"), "MAKEFLAGS": ""}
    log = tmp_path / "make.log"
    old_umask = os.umask(0o022)
    try:
        # `make venv data` once here: two concurrent runs would race to reinstall the
        # package (after an edit of pyproject.toml) and to create the same links
        subprocess.run(["make", "venv", "data"], cwd=project_root(), env=env, check=True, capture_output=True)
        # the reference, uninterrupted, runs beside the chain (its own cache and results)
        ref_results, ref_log = tmp_path / "ref_results", tmp_path / "ref.log"
        ref = _make_reproduce(params_with_cache("ref_cache"), dataset, ref_results, env, ref_log)

        # the chain: killed at each point in turn, then run to the end
        params = params_with_cache("cache")
        cache, results = tmp_path / "cache", tmp_path / "results"
        points = {
            "trunk features cached": _any(cache / "features", "*.json"),
            "training checkpoint written": _any(cache / "models", "*.pt"),
            "table written": _any(results, "table1.csv"),
        }
        for name, point in points.items():
            killed = _run_until(_make_reproduce(params, dataset, results, env, log), point)
            assert killed, f"the run ended before the point {name!r}: {log.read_text()[-2000:]}"
        # a killed table notebook left its partial output under a temporary name only
        assert (results / "notebooks" / ".03_table1.part.ipynb").exists()
        assert not (results / "notebooks" / "03_table1.ipynb").exists()
        last = _make_reproduce(params, dataset, results, env, log)
        assert not _run_until(last, None)
        assert last.returncode == 0, log.read_text()[-3000:]
        assert not _run_until(ref, None)
        assert ref.returncode == 0, ref_log.read_text()[-3000:]
    finally:
        os.umask(old_umask)

    table, ref_table = (results / "table1.csv").read_bytes(), (ref_results / "table1.csv").read_bytes()
    assert table == ref_table
    name = results_name(str(dataset))
    assert name.startswith("my_shapes-") and name.encode() in table
    assert _partial_files(results, cache) == []
    assert len(list((cache / "trunk_onnx").glob("*.onnx"))) == 1  # the features came from the ONNX trunk
    assert (results / STAMP_NAME).is_file()  # the finished run stamped its results (warm reruns skip)
    # named after the folder, under RESULTS; nothing written into the dataset
    assert sorted(p.name for p in (results / "notebooks").iterdir()) == sorted(
        [f"01_base_model_{name}.ipynb", f"02_lvw_{name}.ipynb", "03_table1.ipynb"]
    )
    assert (results / name / "run_lvw.json").is_file() and (results / name / "gradcam_examples.png").is_file()
    assert _tree(dataset) == dataset_files
    modes = {str(p.relative_to(results)): stat.S_IMODE(p.stat().st_mode) for p in results.rglob("*") if p.is_file()}
    assert set(modes.values()) == {0o644}, modes

