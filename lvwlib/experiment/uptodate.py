"""Is ``results/`` up to date? A stamp that lets a warm ``make reproduce`` skip its notebooks.

The notebooks of ``make reproduce`` only read the caches (the cells step before them
computes every Table 1 artefact), so their outputs can change only when one of
these does: the code (``lvwlib``), a notebook, the Makefile, the params file, the make
variables that choose datasets and analyses, or the cache itself (a new or recomputed
entry: new data gets new feature keys, so new entries). The stamp holds a digest of
the first five and the cache's entry count and newest mtime, plus the size of every
file under ``results/`` it vouches for. When all match, the notebooks are skipped;
``make reproduce FORCE=1`` reruns them anyway.

    python -m lvwlib uptodate check results --params params/default.yaml --extra "imagenette ..."
    python -m lvwlib uptodate write results --params params/default.yaml --extra "imagenette ..."

``check`` exits 0 (and says so) when up to date, 1 otherwise with the reason. ``write``
runs only after every notebook succeeded, so a killed run never leaves a stamp.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

from lvwlib.core.config import RunConfig, load_params
from lvwlib.store.paths import project_root
from lvwlib.store.records import write_json

STAMP_NAME = ".reproduce-stamp.json"
# sources whose change can change a notebook's output (relative to the project root)
SOURCE_GLOBS = ("lvwlib/**/*.py", "notebooks/*.ipynb", "Makefile")


def source_digest(params_file: Path, extra: str, root: Path) -> str:
    """sha256 of the code, the notebooks, the Makefile, the params file and ``extra``."""
    digest = hashlib.sha256()
    for pattern in SOURCE_GLOBS:
        for path in sorted(root.glob(pattern)):
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(params_file.read_bytes() + b"\0" + extra.encode())
    return digest.hexdigest()


def cache_state(cache_dir: Path) -> dict[str, Any]:
    """Entry count and newest mtime of the cache (hidden lock and temporary files excluded)."""
    if not cache_dir.is_dir():
        return {"entries": 0, "newest_mtime_ns": 0}

    def hidden(path: Path) -> bool:
        return any(part.startswith(".") for part in path.relative_to(cache_dir).parts)

    files = [p for p in cache_dir.rglob("*") if p.is_file() and not hidden(p)]
    return {"entries": len(files), "newest_mtime_ns": max((p.stat().st_mtime_ns for p in files), default=0)}


def result_sizes(results: Path) -> dict[str, int]:
    """Size of every file under ``results`` (the stamp itself excluded)."""
    return {
        str(p.relative_to(results)): p.stat().st_size
        for p in sorted(results.rglob("*"))
        if p.is_file() and p.name != STAMP_NAME
    }


def current_stamp(params_file: Path, extra: str, root: Path) -> dict[str, Any]:
    """The sources digest and cache state of a run of ``params_file`` (see :func:`stale_reason`)."""
    cache_dir = Path(load_params(params_file).get("cache_dir", RunConfig.cache_dir))
    cache_dir = cache_dir if cache_dir.is_absolute() else root / cache_dir
    return {"sources": source_digest(params_file, extra, root), "cache": cache_state(cache_dir)}


def stale_reason(results: Path, params_file: Path, extra: str, root: Path) -> str | None:
    """None when ``results`` is up to date, else why not (one line)."""
    stamp_path = results / STAMP_NAME
    if not stamp_path.exists():
        return "no stamp of a finished run"
    stamp = json.loads(stamp_path.read_text())
    now = current_stamp(params_file, extra, root)
    if stamp.get("sources") != now["sources"]:
        return "code, notebooks, Makefile, params or make variables changed"
    if stamp.get("cache") != now["cache"]:
        return "the cache changed (entries computed or removed)"
    sizes = result_sizes(results)
    missing = [name for name, size in stamp.get("results", {}).items() if sizes.get(name) != size]
    if missing:
        return f"{len(missing)} result file(s) missing or changed, e.g. {missing[0]}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lvwlib uptodate", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["check", "write"])
    parser.add_argument("results", help="the results folder")
    parser.add_argument("--params", required=True, help="the params yaml of the run")
    parser.add_argument("--extra", default="", help="make variables that change the outputs (datasets, analyses)")
    args = parser.parse_args(argv)
    root = project_root()
    results = Path(args.results).resolve()
    params_file = Path(args.params) if Path(args.params).is_absolute() else root / args.params
    if args.action == "check":
        reason = stale_reason(results, params_file, args.extra, root)
        if reason is None:
            print(f"{results}: up to date (code, params, cache and every result file as at the last finished run); "
                  "notebooks skipped, FORCE=1 reruns them", flush=True)
            return 0
        print(f"{results}: running the notebooks ({reason})", flush=True)
        return 1
    stamp = {**current_stamp(params_file, args.extra, root), "results": result_sizes(results)}
    write_json(results / STAMP_NAME, stamp)
    return 0
