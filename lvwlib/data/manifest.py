"""Checking a dataset copy against its ``MANIFEST.tsv``, with the OK verdict cached.

A manifest lists ``relative/path<TAB>size<TAB>sha256``; :func:`verify_manifest`
checks sizes on every call and hashes once, caching the verdict as json under
``cache_root()/"manifest"``.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lvwlib.store.paths import cache_root
from lvwlib.store.records import write_text

from .errors import DatasetIntegrityError, DatasetNotFoundError

MANIFEST_NAME = "MANIFEST.tsv"
SKIP_HASH_ENV = "LVW_SKIP_HASH"


@dataclass(frozen=True)
class ManifestEntry:
    path: str  # relative, POSIX separators
    size: int  # bytes
    sha256: str  # hex digest


def read_manifest(path: str | Path) -> list[ManifestEntry]:
    """Parse a ``MANIFEST.tsv``: lines ``relative/path<TAB>size<TAB>sha256``."""
    entries = []
    for lineno, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 3 or not parts[1].isdigit():
            raise DatasetIntegrityError(
                f"{path}:{lineno}: expected 'relative/path<TAB>size<TAB>sha256', got {line!r}"
            )
        entries.append(ManifestEntry(parts[0], int(parts[1]), parts[2].strip().lower()))
    return entries


def _sha256_file(path: Path, progress: Any = None) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            if progress is not None:
                progress.update(len(chunk))
    return digest.hexdigest()


def _skip_hash_requested() -> bool:
    return os.environ.get(SKIP_HASH_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def verify_manifest(
    root: str | Path, *, check_hash: bool | None = None, progress: bool = True
) -> list[ManifestEntry]:
    """Check a dataset copy against ``root/MANIFEST.tsv``; return its entries.

    Every listed file must exist with the listed size (checked on every call:
    one ``stat`` per file). The sha256 of every file is checked once: an OK
    verdict is cached as json under ``cache_root()/"manifest"``, keyed by the
    resolved ``root`` and the sha256 of the manifest. The verdict also records
    the files' sizes and modification times, so a file touched since then is
    hashed again. ``check_hash=False``, or ``LVW_SKIP_HASH=1`` when
    ``check_hash`` is None, skips the hashes (sizes are still checked).
    Raises :class:`DatasetIntegrityError` naming the first bad files.
    """
    root = Path(root).resolve()
    manifest = root / MANIFEST_NAME
    if not manifest.is_file():
        raise DatasetNotFoundError(f"no {MANIFEST_NAME} in {root}")
    entries = read_manifest(manifest)
    bad, stats = _check_sizes(root, entries)
    if bad:
        raise DatasetIntegrityError(_bad_files_message(root, bad, len(entries)))
    if check_hash is None:
        check_hash = not _skip_hash_requested()
    if not check_hash:
        return entries
    manifest_sha = _sha256_file(manifest)
    verdict_file = _verdict_path(root, manifest_sha)
    signature = _stat_signature(entries, stats)
    if _read_verdict(verdict_file) == signature:
        return entries
    bad = _check_hashes(root, entries, progress)
    if bad:
        raise DatasetIntegrityError(_bad_files_message(root, bad, len(entries)))
    _write_verdict(verdict_file, root, manifest_sha, signature, entries)
    return entries


def _check_sizes(
    root: Path, entries: Sequence[ManifestEntry]
) -> tuple[list[str], list[tuple[int, int]]]:
    """Problems (``"path (why)"``) and each file's (size, mtime_ns)."""
    bad, stats = [], []
    for e in entries:
        try:
            st = (root / e.path).stat()
        except OSError:
            bad.append(f"{e.path} (missing)")
            stats.append((-1, -1))
            continue
        if st.st_size != e.size:
            bad.append(f"{e.path} (size {st.st_size}, expected {e.size})")
        stats.append((st.st_size, st.st_mtime_ns))
    return bad, stats


def _check_hashes(root: Path, entries: Sequence[ManifestEntry], progress: bool) -> list[str]:
    from tqdm.auto import tqdm

    bad = []
    total = sum(e.size for e in entries)
    with tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        desc=f"sha256 {root.name}",
        disable=not progress,
        leave=False,
    ) as bar:
        for e in entries:
            if _sha256_file(root / e.path, bar) != e.sha256:
                bad.append(f"{e.path} (sha256 differs)")
    return bad


def _bad_files_message(root: Path, bad: Sequence[str], n_files: int) -> str:
    shown = ", ".join(bad[:5]) + (", ..." if len(bad) > 5 else "")
    return (
        f"{root} does not match its {MANIFEST_NAME}: {len(bad)} of {n_files} files bad, "
        f"first: {shown}. The copy is incomplete or changed: copy it again from its source."
    )


def _stat_signature(entries: Sequence[ManifestEntry], stats: Sequence[tuple[int, int]]) -> str:
    digest = hashlib.sha256()
    for e, (size, mtime) in zip(entries, stats, strict=True):
        digest.update(f"{e.path}\t{size}\t{mtime}\n".encode())
    return digest.hexdigest()


def _verdict_path(root: Path, manifest_sha: str) -> Path:
    key = hashlib.sha256(f"{root}\n{manifest_sha}".encode()).hexdigest()[:32]
    return cache_root() / "manifest" / f"{key}.json"


def _read_verdict(path: Path) -> str | None:
    """The stat signature of a cached OK verdict, or None."""
    try:
        verdict = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return verdict.get("stat_signature") if verdict.get("ok") else None


def _write_verdict(
    path: Path, root: Path, manifest_sha: str, signature: str, entries: Sequence[ManifestEntry]
) -> None:
    verdict = {
        "ok": True,
        "root": str(root),
        "manifest_sha256": manifest_sha,
        "files": len(entries),
        "bytes": sum(e.size for e in entries),
        "stat_signature": signature,
    }
    try:
        write_text(path, json.dumps(verdict, indent=1))  # atomic: a concurrent reader never sees half a file
    except OSError as err:  # a read-only cache only costs a re-hash next time
        warnings.warn(f"could not cache the manifest verdict at {path}: {err}", stacklevel=3)
