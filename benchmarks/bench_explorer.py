"""Time each explorer update on cached data (the issue's budget: under 1 second).

    .venv/bin/python benchmarks/bench_explorer.py [params/quick.yaml]

Needs the params' models in the cache (``make quick``). The first use of a method
loads its model from disk and is timed apart ("load"); every later change of
image, method, m, q or word is an "update". Prints the median and the maximum of
each kind and exits non-zero if an update's median exceeds 1 s.
"""

from __future__ import annotations

import statistics
import sys
import time

import matplotlib

from lvwlib.methods import registry
from lvwlib.ui.widgets import Explorer

matplotlib.use("Agg")
BUDGET_S = 1.0


def main(params_file: str = "params/quick.yaml") -> int:
    t0 = time.perf_counter()
    app = Explorer(params_file)
    if not app.choices:
        print(app.status.value)
        return 2
    print(f"open ({app.dataset.value}, seed {app.seed.value}): {time.perf_counter() - t0:.2f} s")
    times: dict[str, list[float]] = {}

    def record(kind: str) -> None:
        times.setdefault(kind, []).append(app.seconds)

    trained = [m for m in registry.names() if app.session.model(m) is not None]
    for method in trained:  # first use: load from disk
        app.method.value = method
        record("load (first use of a method)")
    for method in trained:
        app.method.value = method
        record("method")
        for step in range(1, 4):
            app.position.value = step
            record("image")
        for q in (60.0, 70.0, 50.0):
            app.q.value = q
            record("q")
        app.m.value = 5
        record("m")
        app.m.value = app.session.exp.run.eval.top_m
        record("m")
        for _, word in list(app.word_pick.options)[1:3]:
            app.word_pick.value = word
            record("word")
    worst = 0.0
    for kind, values in times.items():
        median = statistics.median(values)
        print(f"{kind:32s} n={len(values):3d}  median {median:.3f} s  max {max(values):.3f} s")
        if not kind.startswith("load"):
            worst = max(worst, median)
    print(f"slowest update kind, median: {worst:.3f} s (budget {BUDGET_S:.1f} s)")
    return 0 if worst < BUDGET_S else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
