"""Session-wide test settings: the torch thread count.

Tests run on one thread unless ``LVW_TEST_THREADS=N`` says otherwise (their tensors are
small: threads cost more than they save, and test files used to pin one thread each,
for the whole session, as a side effect of being imported).

Another thread count sums floats in another order, so ``LVW_TEST_THREADS=3 make test``
(``make test-threads``) is this machine's stand-in for another CPU, whose kernels round
differently: every numeric comparison must pass at 1 and at 3 threads.
"""

from __future__ import annotations

import os

import pytest
import torch

THREADS = int(os.environ.get("LVW_TEST_THREADS", "1"))


def pytest_configure(config: pytest.Config) -> None:  # noqa: ARG001 (pytest's hook signature)
    torch.set_num_threads(THREADS)


def pytest_report_header(config: pytest.Config) -> str:  # noqa: ARG001
    return f"torch threads: {THREADS} (LVW_TEST_THREADS)"
