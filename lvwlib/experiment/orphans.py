"""Pool workers that end with the process that started them (no torch import: cheap to load)."""

from __future__ import annotations

import os
import threading
import time


def exit_with_parent(parent: int, poll_s: float = 1.0) -> None:
    """Pool worker initializer: end this worker when the process that started it is gone.

    A killed ``make reproduce`` (SIGTERM, SIGKILL, a closed terminal) would otherwise leave its
    workers training on, orphaned, for the rest of their cells or notebooks.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
