"""Device-agnostic code: a CPU run gives exactly the results of the code before it.

``tests/data/cpu_reference_tiny.json`` was written by
``tests/data/make_cpu_reference.py`` at the commit before the refactor; the
runs below must reproduce it bit for bit (floats compared after the same json
round trip), with ``device: auto`` on a machine without CUDA (else ``cpu``),
on one thread (as the reference: the thread count changes float reductions).
The reference's push rows still carry a ``flip`` field, always 0: push scans the
unflipped images only, and the rows no longer record it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from lvwlib.core.config import load_params
from lvwlib.experiment.config import experiment_from_params
from lvwlib.experiment.runner import run_all
from lvwlib.store.paths import resolve

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "cpu_reference_tiny.json"
KEYS = ("accuracy", "iou", "iou_reference", "per_image_iou", "push", "history")


def _run(tmp_path: Path, device: str, methods: list[str]) -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # float reductions depend on the thread count; the reference used 1
    try:
        return _run_pinned(tmp_path, device, methods)
    finally:
        torch.set_num_threads(threads)


def _run_pinned(tmp_path: Path, device: str, methods: list[str]) -> dict:
    params = load_params(resolve("params/tiny.yaml"))
    params.update(cache_dir=str(tmp_path / device), device=device, methods=methods)
    rows = run_all(experiment_from_params(params, "synthetic"), progress=False)
    plain = json.loads(json.dumps(rows, default=float))
    return {r["method"]: {k: r[k] for k in KEYS if k in r} for r in plain}


def test_cpu_run_reproduces_the_pre_refactor_results(tmp_path):
    # device: auto is the default; on this CPU-only machine it must be the old CPU run
    # (with CUDA present, auto would give other numbers: ask for the CPU explicitly).
    device = "cpu" if torch.cuda.is_available() else "auto"
    reference = json.loads(REFERENCE.read_text())["methods"]
    got = _run(tmp_path, device, ["base", "lvw", "protopnet"])
    for method in ("base", "lvw", "protopnet"):
        for key in reference[method]:
            want = reference[method][key]
            if key == "push":
                assert all(row.pop("flip") == 0 for row in want)
            assert got[method][key] == want, f"{method}: {key} differs from the reference"
