"""lvwlib.store.cache.cached under concurrent writers: one compute, one value, no stray files."""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path

import pytest
import torch

from lvwlib.store.cache import cache_key, cached

INPUTS = {"what": "slow square", "n": 3}


def _slow_compute(counter: str) -> torch.Tensor:
    # One line per call: the test counts the lines. The sleep keeps the
    # other processes waiting on the lock while this one computes.
    with open(counter, "a") as f:
        f.write("computed\n")
    time.sleep(0.5)
    return torch.arange(4) ** 2


def _worker(cache_dir: str, counter: str, start, out) -> None:
    start.wait()  # all processes ask at (nearly) the same moment
    value = cached(cache_dir, "demo", INPUTS, lambda: _slow_compute(counter))
    out.put(value.tolist())


def test_concurrent_processes_compute_a_key_once(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    counter = tmp_path / "calls.txt"
    counter.touch()
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(str(tmp_path / "cache"), str(counter), start, out)) for _ in range(4)]
    for p in procs:
        p.start()
    start.set()
    values = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert counter.read_text().splitlines() == ["computed"]
    assert values == [[0, 1, 4, 9]] * 4
    folder = tmp_path / "cache" / "demo"
    key = cache_key(INPUTS)
    # the value and its inputs; the (empty) lock file stays by design; no *.tmp left
    assert sorted(p.name for p in folder.iterdir()) == sorted([f"{key}.pt", f"{key}.json", f".{key}.lock"])
    assert not list(folder.glob("*.tmp")) and not list(folder.glob(".*.tmp"))


def test_lock_is_released_after_a_failed_compute(tmp_path: Path) -> None:
    def boom() -> None:
        raise RuntimeError("compute failed")

    with pytest.raises(RuntimeError, match="compute failed"):
        cached(tmp_path, "demo", INPUTS, boom)
    # the same process can take the lock again and nothing half-written was stored
    assert cached(tmp_path, "demo", INPUTS, lambda: torch.ones(2)).tolist() == [1.0, 1.0]
