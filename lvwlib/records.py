"""Run records (config, git commit, package versions, wall time) and atomic writes.

Every result folder gets a ``run.json`` written by :class:`RunRecord`; every file
is written to a temporary name and renamed, so nothing half-written is left.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from lvwlib.paths import project_root

PACKAGES = (
    "torch", "torchvision", "timm", "grad-cam", "numpy", "pandas", "scikit-learn",
    "scikit-image", "papermill", "lvwlib",
)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the same folder; rename it onto ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented json to ``path`` atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def save_with(path: str | Path, saver: Callable[[Path], None]) -> None:
    """Call ``saver(tmp_path)`` and rename the result onto ``path`` (for torch.save, savefig)."""
    with atomic_path(path) as tmp:
        saver(tmp)


def git_commit() -> dict[str, Any]:
    """The project's git commit and whether the work tree had uncommitted changes."""
    def run(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=project_root(), capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        return {"commit": run("rev-parse", "HEAD"), "dirty": bool(run("status", "--porcelain"))}
    except (subprocess.CalledProcessError, FileNotFoundError):
        return {"commit": None, "dirty": None}


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages results depend on."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def environment() -> dict[str, Any]:
    """Git commit, package versions, Python and platform."""
    return {
        "git": git_commit(),
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


class RunRecord:
    """Context manager writing ``<folder>/run.json`` with config, environment and wall time.

    It also lists the cache lookups made inside the block (:func:`lvwlib.cache.cache_events`):
    for each artefact whether it was computed now or read from the cache, and the git
    commit and wall time of the computation that produced it.
    """

    def __init__(self, folder: str | Path, config: dict[str, Any], name: str = "run.json") -> None:
        self.path = Path(folder) / name
        self.config = config
        self.extra: dict[str, Any] = {}

    def __enter__(self) -> RunRecord:
        from lvwlib.cache import cache_events  # late: cache imports this module

        self._events_before = len(cache_events())
        self.start = time.time()
        self.started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            return
        from lvwlib.cache import cache_events

        events = cache_events()[self._events_before :]
        write_json(
            self.path,
            {
                "config": self.config,
                "started": self.started,
                "wall_time_s": round(time.time() - self.start, 2),
                **environment(),
                # Which artefacts came from the cache, and the commit and wall time of
                # the run that computed each (a replay's own wall time says little).
                "cache": {
                    "entries": events,
                    "hits": sum(e["hit"] for e in events),
                    "computed": sum(not e["hit"] for e in events),
                    "computed_wall_time_s": round(sum(e.get("wall_time_s", 0.0) for e in events), 2),
                },
                **self.extra,
            },
        )
