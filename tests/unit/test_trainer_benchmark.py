"""benchmarks/trainer_benchmark.py's step meter: it stops a fit after the steps it needs and
counts one iteration's FLOPs (a known matmul)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "trainer_benchmark.py"


def _module():
    spec = importlib.util.spec_from_file_location("trainer_benchmark", _PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_measure_fit_stops_early_and_counts_one_iteration() -> None:
    bench = _module()
    x = torch.randn(4, 8)
    w = torch.nn.Parameter(torch.randn(8, 3))
    opt = torch.optim.SGD([w], lr=0.1)
    done = []

    def fit() -> None:
        for _ in range(100):
            opt.zero_grad()
            (x @ w).sum().backward()  # forward 2*4*8*3 FLOPs, backward (grad of w only) the same
            opt.step()
            done.append(1)

    m = bench.measure_fit(fit, warmup=2, steps=3)
    assert m.steps_seen == 2 + 3 + 2 and len(done) == 2 + 3 + 1  # stopped inside the 7th step
    assert len(m.step_s) == 3 and all(s > 0 for s in m.step_s)
    assert m.flops == 2 * (2 * 4 * 8 * 3)


def test_measure_fit_of_a_short_fit_keeps_what_it_saw() -> None:
    bench = _module()
    w = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([w], lr=0.1)

    def fit() -> None:
        for _ in range(3):
            opt.zero_grad()
            (w * 2).sum().backward()
            opt.step()

    m = bench.measure_fit(fit, warmup=1, steps=5)
    assert m.steps_seen == 3 and len(m.step_s) == 1 and m.flops == 0
