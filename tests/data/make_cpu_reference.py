"""Regenerate ``cpu_reference_tiny.json``: the tiny pipeline's CPU results that
``tests/integration/test_devices.py`` requires within rounding (tolerances stated there:
another CPU or thread count sums floats in another order).

The file was first made at commit 2095066, before the device refactor (the
refactor reproduced it bit for bit), and regenerated when the validation split
changed the tiny data on purpose, so the
test shows that device-agnostic code gives a CPU run the old results.
It pins one thread (results depend on the thread count in the last bits). Rerun it only when a change is *meant* to alter the tiny results:

    .venv/bin/python tests/data/make_cpu_reference.py /tmp/refcache tests/data/cpu_reference_tiny.json
"""

import json
import sys

import torch

from lvwlib.core.config import load_params
from lvwlib.experiment.config import experiment_from_params
from lvwlib.experiment.runner import run_all
from lvwlib.store.paths import resolve

METHODS = ("base", "lvw", "protopnet")


def main(cache_dir: str, out_file: str) -> None:
    """Run the tiny pipeline on CPU with one thread and write its results to ``out_file``."""
    torch.set_num_threads(1)  # float reductions depend on the thread count: the test pins 1 too
    params = load_params(resolve("params/tiny.yaml"))
    params["cache_dir"] = cache_dir
    params["methods"] = list(METHODS)
    rows = run_all(experiment_from_params(params, "synthetic"), progress=False)
    keys = ("accuracy", "iou", "iou_reference", "per_image_iou", "push", "history")
    out = {r["method"]: {k: r[k] for k in keys if k in r} for r in rows}
    meta = "tests/data/make_cpu_reference.py, params/tiny.yaml, dataset synthetic"
    with open(out_file, "w") as fh:
        json.dump({"generated_by": meta, "methods": out}, fh, indent=1)


# a script, never run on import (pytest given this path once ran it with its own flags as paths)
if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
