"""Run records (config, git commit, package versions, wall time) and atomic writes.

Every result folder gets a ``run.json`` written by :class:`RunRecord`; every file
is written to a temporary name and renamed, so nothing half-written is left.
"""

from __future__ import annotations

import errno
import glob
import json
import os
import platform
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from lvwlib.store.paths import project_root

PACKAGES = (
    "torch", "torchvision", "timm", "grad-cam", "numpy", "pandas", "scikit-learn",
    "scikit-image", "papermill", "lvwlib",
)


TMP_SUFFIX = ".tmp"
# errno of a write that found no room: the disk is full, or the user's disk quota is spent
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


class DiskFullError(OSError):
    """A write that found no space left; the message names the file, and nothing partial is kept."""


HOST = re.sub(r"[^A-Za-z0-9]", "", platform.node())[:32] or "host"


# Every cache lookup of this process, in order (lvwlib.store.cache appends): what a run record reports.
_EVENTS: list[dict[str, Any]] = []


def cache_events() -> list[dict[str, Any]]:
    """The cache lookups of this process so far: kind, key, hit, and the provenance of the entry."""
    return [dict(e) for e in _EVENTS]


def _tmp_name(path: Path) -> Path:
    # The writer's host and pid are in the name, so a later run can tell a
    # temporary file left by a killed process (pid gone on this host) from one
    # another live process is writing (on a shared disk: maybe on another host).
    return path.parent / f".{path.name}.{HOST}.{os.getpid()}-{secrets.token_hex(4)}{TMP_SUFFIX}"


def _pid_of(tmp: Path) -> int | None:
    """The writer's pid if ``tmp`` was made on this host by :func:`atomic_path`, else None."""
    match = re.search(r"\.([A-Za-z0-9]+)\.(\d+)-[0-9a-f]{8}\.tmp$", tmp.name)
    return int(match.group(2)) if match and match.group(1) == HOST else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temporaries(folder: str | Path, recursive: bool = True) -> list[Path]:
    """Delete the temporary files of :func:`atomic_path` whose writer is dead.

    A SIGKILLed run leaves ``.<name>.<pid>-<hex>.tmp`` files behind; this is
    called on the next write of the same file and by ``make reproduce``
    (:mod:`lvwlib.experiment.reproduce`) before its notebooks run. Files of live processes are kept. Returns the deleted paths.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = folder.rglob(f".*{TMP_SUFFIX}") if recursive else folder.glob(f".*{TMP_SUFFIX}")
    removed = []
    for tmp in found:
        pid = _pid_of(tmp)
        if pid is not None and pid != os.getpid() and not _alive(pid):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _remove_stale_siblings(path: Path) -> None:
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*{TMP_SUFFIX}"):
        pid = _pid_of(tmp)
        if pid is not None and pid != os.getpid() and not _alive(pid):
            tmp.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the same folder; rename it onto ``path`` on success.

    The temporary file is created with mode 0o666 minus the umask, like any
    file ``open(path, "w")`` creates (``tempfile.mkstemp`` would make it 0o600,
    and the rename would leave results readable by their owner only).
    Temporary files of ``path`` left by killed processes are deleted first.

    A full disk (or spent quota) while writing raises :class:`DiskFullError` naming ``path``;
    the temporary file is removed and ``path`` keeps its previous content (if any).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_siblings(path)
    while True:
        tmp = _tmp_name(path)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:  # 32 random bits collided: draw again
            continue
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        if err.errno in NO_SPACE and not isinstance(err, DiskFullError):
            raise DiskFullError(
                err.errno, f"no space left on the disk while writing {path}: free some space (or move "
                f"the results, or the cache with LVW_CACHE) and rerun; nothing partial was kept",
            ) from err
        raise
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


def write_table(df: Any, markdown: str, stem: str | Path) -> None:
    """Write a table as ``<stem>.csv`` (``df``, a pandas DataFrame) and ``<stem>.md`` (``markdown``), atomically."""
    stem = Path(stem)
    write_text(stem.with_suffix(".csv"), df.to_csv(index=False))
    write_text(stem.with_suffix(".md"), markdown)


def save_with(path: str | Path, saver: Callable[[Path], None]) -> None:
    """Call ``saver(tmp_path)`` and rename the result onto ``path`` (for torch.save, savefig)."""
    with atomic_path(path) as tmp:
        saver(tmp)


def git_commit() -> dict[str, Any]:
    """The project's git commit and whether the work tree had uncommitted changes.

    ``results/`` is left out of the check: a run writes its own outputs there, which
    would otherwise mark every record after the first as dirty.
    """
    def run(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=project_root(), capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        return {"commit": run("rev-parse", "HEAD"), "dirty": bool(run("status", "--porcelain", "--", ".", ":(exclude)results"))}
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

    It also lists the cache lookups made inside the block (:func:`cache_events`):
    for each artefact whether it was computed now or read from the cache, and the git
    commit and wall time of the computation that produced it.
    """

    def __init__(self, folder: str | Path, config: dict[str, Any], name: str = "run.json") -> None:
        self.path = Path(folder) / name
        self.config = config
        self.extra: dict[str, Any] = {}

    def __enter__(self) -> RunRecord:
        self._events_before = len(cache_events())
        self.start = time.time()
        self.started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            return
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
