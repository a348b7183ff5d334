"""Disk cache of expensive artefacts, keyed by exactly the config fields they depend on.

An entry is ``<cache_dir>/<kind>/<key>.pt`` plus ``<key>.json`` holding the
key's inputs in plain form (with the fingerprint of the code the value depends
on) and the provenance of the value (commit, wall time). The key is the sha256 of those inputs, so a changed
field gives a new key; on load the stored inputs are compared with the
requested ones, so a file copied or renamed from another config is refused
with an error instead of being served.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack, nullcontext
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

from lvwlib.store.records import _EVENTS, git_commit, save_with, write_json

CACHE_FORMAT = 2  # bump when the layout of cached artefacts changes (2: code fingerprint + provenance)


class StaleCacheError(RuntimeError):
    """A cache entry whose recorded config differs from the requested one."""


def cache_key(inputs: dict[str, Any]) -> str:
    """sha256 (first 16 hex digits) of the canonical json of ``inputs``."""
    text = json.dumps({"format": CACHE_FORMAT, **inputs}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def canonical_inputs(inputs: dict[str, Any]) -> Any:
    """``inputs`` as stored beside an entry (plain json, with the cache format): what a lookup compares."""
    return json.loads(json.dumps({"format": CACHE_FORMAT, **inputs}, sort_keys=True, default=str))


def _provenance(wall_time_s: float) -> dict[str, Any]:
    """Who computed an entry: the commit (and whether its tree was dirty), when, and how long it took."""
    return {
        **git_commit(),
        "computed": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_time_s": round(wall_time_s, 3),
        "host": platform.node(),
    }


def read_entry_meta(meta_path: Path) -> dict[str, Any]:
    """The ``{"inputs": ..., "provenance": ...}`` record of a cache entry."""
    return json.loads(Path(meta_path).read_text())


def cached(
    cache_dir: str | Path,
    kind: str,
    inputs: dict[str, Any],
    compute: Callable[[], Any],
    *,
    enabled: bool = True,
    code: str | None = None,
) -> Any:
    """Return the cached value for ``inputs`` or compute, store and return it.

    Args:
        cache_dir: root of the cache.
        kind: sub-folder naming the artefact (features, gradcam, base_model, ...).
        inputs: every config field and data fingerprint the value depends on.
        compute: called on a miss; its result must be ``torch.save``-able.
        enabled: False computes without reading or writing the cache.
        code: fingerprint of the code the value depends on
            (:func:`lvwlib.store.fingerprint.code_fingerprint`); part of the key, so an
            edit of that code recomputes the value.

    The entry's ``.json`` holds the inputs and the provenance of the value (git
    commit, dirty flag, wall time of the computation); every lookup is logged
    for :func:`lvwlib.store.records.cache_events`.
    """
    if not enabled:
        return compute()
    if code is not None:
        inputs = {**inputs, "code": code}
    key = cache_key(inputs)
    folder = Path(cache_dir) / kind
    # Concurrent cells (lvwlib.experiment.runner) may ask for the same key: the lock makes
    # check-compute-write one step, so a waiting process loads what the first wrote.
    with key_lock(folder / key):
        return _cached_unlocked(cache_dir, kind, inputs, compute, key=key, folder=folder)


def key_lock(stem: str | Path) -> AbstractContextManager:
    """An inter-process lock for the artefact ``<stem>.*``: the file ``.<name>.lock`` beside it.

    The lock file is left in place (empty): deleting it on release would let a
    waiter lock the old inode while a newcomer locks a new file. An OS-level
    lock is released when its process dies, so a crashed cell blocks nobody.
    """
    if _distributed_world() > 1:
        # DDP ranks run in lockstep through collectives and only rank 0 writes: a file
        # lock held by rank 0 across a collective would block rank 1 outside it (deadlock).
        return nullcontext()
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(stem.parent / f".{stem.name}.lock")


def _distributed_world() -> int:
    """Processes of the initialised torch.distributed group (1 when there is none)."""
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _cached_unlocked(
    cache_dir: str | Path, kind: str, inputs: dict[str, Any], compute: Callable[[], Any], *, key: str, folder: Path
) -> Any:
    """The body of :func:`cached` (check, compute, write), called with the key's lock held."""
    value_path, meta_path = folder / f"{key}.pt", folder / f"{key}.json"
    if value_path.exists() and meta_path.exists():
        stored = read_entry_meta(meta_path)
        if stored.get("inputs") != canonical_inputs(inputs):
            raise StaleCacheError(
                f"cache entry {value_path} was made from another config; "
                f"delete it (or the folder {folder}) to recompute"
            )
        _EVENTS.append({"kind": kind, "key": key, "hit": True, **stored.get("provenance", {})})
        return torch.load(value_path, map_location="cpu", weights_only=False)
    start = time.perf_counter()
    value = compute()
    _store(folder, key, inputs, value, _provenance(time.perf_counter() - start), kind)
    return value


def _store(folder: Path, key: str, inputs: dict[str, Any], value: Any, provenance: dict[str, Any], kind: str) -> None:
    """Write one entry: the value, then its json (an entry counts only once both files exist).

    A failed json write (a full disk: :class:`lvwlib.store.records.DiskFullError`) removes the
    value again, so no half entry is left; the next run computes it afresh.
    """
    value_path = folder / f"{key}.pt"
    save_with(value_path, lambda tmp: torch.save(value, tmp))
    try:
        write_json(folder / f"{key}.json", {"inputs": canonical_inputs(inputs), "provenance": provenance})
    except BaseException:
        value_path.unlink(missing_ok=True)
        raise
    _EVENTS.append({"kind": kind, "key": key, "hit": False, **provenance})


def cached_together(
    cache_dir: str | Path,
    kind: str,
    inputs: list[dict[str, Any]],
    computes: list[Callable[[], Any]],
    *,
    enabled: bool = True,
    code: str | None = None,
) -> list[Any]:
    """:func:`cached` of several entries, all computed before any is stored.

    Entries found are loaded; the missing ones are computed in order, and only
    when every computation succeeded are they written (value, then its json):
    an error in a later entry (an unreadable test image) leaves the cache as it
    was. The keys' locks are held throughout, taken in sorted order.
    """
    if len(inputs) != len(computes):
        raise ValueError(f"{len(inputs)} inputs but {len(computes)} compute functions")
    if not enabled:
        return [compute() for compute in computes]
    folder = Path(cache_dir) / kind
    entries = [{**entry, "code": code} if code is not None else entry for entry in inputs]
    keys = [cache_key(entry) for entry in entries]
    with ExitStack() as locks:
        for key in sorted(set(keys)):
            locks.enter_context(key_lock(folder / key))
        values: list[Any] = []
        missing: list[tuple[str, dict[str, Any], Any, dict[str, Any]]] = []
        for key, entry, compute in zip(keys, entries, computes, strict=True):
            if (folder / f"{key}.pt").exists() and (folder / f"{key}.json").exists():
                # a hit: the same check, load and log as cached()
                values.append(_cached_unlocked(cache_dir, kind, entry, compute, key=key, folder=folder))
                continue
            start = time.perf_counter()
            values.append(compute())
            missing.append((key, entry, values[-1], _provenance(time.perf_counter() - start)))
        for key, entry, value, provenance in missing:
            _store(folder, key, entry, value, provenance, kind)
    return values
