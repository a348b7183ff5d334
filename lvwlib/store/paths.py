"""Where the project, its data and its caches live.

Two environment variables move the data and the caches away from the
checkout (e.g. to a shared disk): ``LVW_DATA`` and ``LVW_CACHE``. They are read
on every call, so tests can point them at temporary folders with
``monkeypatch.setenv``.
"""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The checkout: the parent of the ``lvwlib`` package folder (this file is lvwlib/store/paths.py)."""
    return Path(__file__).resolve().parents[2]


def data_root() -> Path:
    """Folder holding one sub-folder per dataset: ``$LVW_DATA`` if set, else ``<project>/data``."""
    env = os.environ.get("LVW_DATA")
    return Path(env).expanduser() if env else project_root() / "data"


def cache_root() -> Path:
    """Folder of derived, re-creatable files: ``$LVW_CACHE`` if set, else ``<project>/cache``."""
    env = os.environ.get("LVW_CACHE")
    return Path(env).expanduser() if env else project_root() / "cache"


def resolve(path: str | Path) -> Path:
    """A relative path is taken from the project root (notebooks run in notebooks/)."""
    path = Path(path)
    return path if path.is_absolute() else project_root() / path
