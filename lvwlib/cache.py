"""Disk cache of expensive artefacts, keyed by exactly the config fields they depend on.

An entry is ``<cache_dir>/<kind>/<key>.pt`` plus ``<key>.json`` holding the
key's inputs in plain form. The key is the sha256 of those inputs, so a changed
field gives a new key; on load the stored inputs are compared with the
requested ones, so a file copied or renamed from another config is refused
with an error instead of being served.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from lvwlib.records import save_with, write_json

# Moved to lvwlib.trunk_features; re-exported so old imports keep working.
from lvwlib.trunk_features import compute_trunk_features

CACHE_FORMAT = 1  # bump when the layout of cached artefacts changes


class StaleCacheError(RuntimeError):
    """A cache entry whose recorded config differs from the requested one."""


def cache_key(inputs: dict[str, Any]) -> str:
    """sha256 (first 16 hex digits) of the canonical json of ``inputs``."""
    text = json.dumps({"format": CACHE_FORMAT, **inputs}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _canonical(inputs: dict[str, Any]) -> Any:
    return json.loads(json.dumps({"format": CACHE_FORMAT, **inputs}, sort_keys=True, default=str))


def cached(
    cache_dir: str | Path,
    kind: str,
    inputs: dict[str, Any],
    compute: Callable[[], Any],
    *,
    enabled: bool = True,
) -> Any:
    """Return the cached value for ``inputs`` or compute, store and return it.

    Args:
        cache_dir: root of the cache.
        kind: sub-folder naming the artefact (features, gradcam, base_model, ...).
        inputs: every config field and data fingerprint the value depends on.
        compute: called on a miss; its result must be ``torch.save``-able.
        enabled: False computes without reading or writing the cache.
    """
    if not enabled:
        return compute()
    key = cache_key(inputs)
    folder = Path(cache_dir) / kind
    value_path, meta_path = folder / f"{key}.pt", folder / f"{key}.json"
    if value_path.exists() and meta_path.exists():
        stored = json.loads(meta_path.read_text())
        if stored != _canonical(inputs):
            raise StaleCacheError(
                f"cache entry {value_path} was made from another config; "
                f"delete it (or the folder {folder}) to recompute"
            )
        return torch.load(value_path, map_location="cpu", weights_only=False)
    value = compute()
    save_with(value_path, lambda tmp: torch.save(value, tmp))
    write_json(meta_path, _canonical(inputs))
    return value

__all__ = ["CACHE_FORMAT", "StaleCacheError", "cache_key", "cached", "compute_trunk_features"]
