"""Session-wide test settings: the torch thread count.

Tests run on one thread unless ``LVW_TEST_THREADS=N`` says otherwise (their tensors are
small: threads cost more than they save, and test files used to pin one thread each,
for the whole session, as a side effect of being imported).

Another thread count sums floats in another order, so ``LVW_TEST_THREADS=3 make test``
(``make test-threads``) is this machine's stand-in for another CPU, whose kernels round
differently: every numeric comparison must pass at 1 and at 3 threads.

Order: the files that run whole ``make reproduce`` chains or process pools come first
(:data:`LONGEST_FIRST`, measured CPU seconds in the comment). ``make test`` hands whole files to
the pytest-xdist workers in collection order (``--dist loadfile --no-loadscope-reorder``), so the
two longest start at once on the two workers and the short files fill the gaps after them;
xdist's default order (most tests first) started them last, with one worker idle at the end.
"""

from __future__ import annotations

import os

import pytest
import torch

THREADS = int(os.environ.get("LVW_TEST_THREADS", "1"))

# Measured CPU seconds (the file's tests and their child processes) on this 2-core machine:
LONGEST_FIRST: tuple[str, ...] = (
    "tests/integration/test_user_runs.py",  # 250 s: three make reproduce at once, then two more
    "tests/integration/test_interrupted_reproduce.py",  # 127 s: a reference and a killed chain
    "tests/integration/test_cells.py",  # 98 s: process pools and submitit jobs
)


def pytest_configure(config: pytest.Config) -> None:  # noqa: ARG001 (pytest's hook signature)
    torch.set_num_threads(THREADS)


def pytest_report_header(config: pytest.Config) -> str:  # noqa: ARG001
    return f"torch threads: {THREADS} (LVW_TEST_THREADS)"


def _rank(item: pytest.Item) -> int:
    path = item.nodeid.split("::", 1)[0]
    return next((i for i, name in enumerate(LONGEST_FIRST) if path.endswith(name)), len(LONGEST_FIRST))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:  # noqa: ARG001
    items.sort(key=_rank)  # stable: every other file keeps pytest's order
