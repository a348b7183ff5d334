"""Fingerprints of the code an artefact depends on, for cache keys.

A cached artefact (trunk features, a trained model, a result) is only valid for
the code that computed it. :func:`code_fingerprint` hashes the source files of
the given modules and of every module of ``lvwlib`` (or of their own package)
they import, directly or not (read from disk with :mod:`ast`, so an edit is seen
without a restart). A change to a loss therefore changes the key of every model
trained with it, and of nothing that does not import it.

Modules that hold no computation (config dataclasses, run records, paths,
the params schema) are left out on purpose: a new config field or a new record
field would otherwise invalidate every cache, and the config values an artefact
depends on are in its key already.

The sources are read under the project root, or under ``$LVW_CODE_ROOT`` when
set (a copy of the package: the tests edit a copy to see which keys change).
A method module outside ``lvwlib`` (a user's own, registered with
:func:`lvwlib.methods.registry.register`) is found where Python imports it from.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import os
from pathlib import Path

from lvwlib.store.paths import project_root

# Plumbing modules whose edits cannot change a computed number.
EXCLUDED = frozenset({"lvwlib.core.config", "lvwlib.store.records", "lvwlib.store.paths", "lvwlib.experiment.schema", "lvwlib.store.fingerprint"})
ROOT_ENV = "LVW_CODE_ROOT"  # folder holding the lvwlib sources that fingerprints read (default: the project root)
PACKAGE = "lvwlib"

# ast.parse of a file, by the sha256 of its bytes: a key is computed often (the explorer checks
# every method of every seed), and an edited file has other bytes, so it is parsed again.
_PARSED: dict[str, list[tuple[str, tuple[str, ...]]]] = {}


def code_root() -> Path:
    """Where the ``lvwlib`` sources are read: ``$LVW_CODE_ROOT`` or the project root."""
    env = os.environ.get(ROOT_ENV)
    return Path(env) if env else project_root()


def module_file(name: str, root: Path) -> Path | None:
    """The source file of module ``name`` (``a.b`` -> a/b.py or a/b/__init__.py).

    ``lvwlib`` modules are looked up under ``root`` only; any other module where
    Python would import it from (None when it has no source file).
    """
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    if name.split(".")[0] == PACKAGE:
        return None
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):  # a parent that is no package, a half-imported module
        return None
    origin = spec.origin if spec is not None else None
    return Path(origin) if origin and origin.endswith(".py") else None


def _imports(name: str, path: Path, source: bytes) -> list[tuple[str, tuple[str, ...]]]:
    """What the source of module ``name`` imports: (module, names taken from it) per statement."""
    digest = hashlib.sha256(name.encode() + b"\0" + source).hexdigest()
    if digest not in _PARSED:
        tree = ast.parse(source, filename=str(path))
        is_package = path.name == "__init__.py"
        found: list[tuple[str, tuple[str, ...]]] = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.extend((alias.name, ()) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    # from .x import y inside a.b.c -> a.b.x; inside a package's __init__, from a.b
                    parts = name.split(".") if is_package else name.split(".")[:-1]
                    parts = parts[: len(parts) - (node.level - 1)]
                    module = ".".join([*parts, node.module] if node.module else parts)
                else:
                    module = node.module or ""
                found.append((module, tuple(alias.name for alias in node.names)))
        _PARSED[digest] = found
    return _PARSED[digest]


def _imported(name: str, path: Path, packages: set[str], root: Path) -> set[str]:
    """Modules of ``packages`` that module ``name`` imports.

    ``from pkg import sub`` counts as importing the submodule ``pkg.sub`` (not the package's
    ``__init__``) when ``sub`` is a module, and ``pkg`` otherwise (as the layer test reads imports).
    """
    found: set[str] = set()
    for module, taken in _imports(name, path, path.read_bytes()):
        if module.split(".")[0] not in packages:
            continue
        subs = {f"{module}.{n}" for n in taken if module_file(f"{module}.{n}", root) is not None}
        found.update(subs or {module})
    return found


def module_closure(*names: str, root: Path | None = None) -> dict[str, Path]:
    """Every module reachable by imports from ``names`` within their packages and lvwlib: name -> file."""
    root = Path(root) if root is not None else code_root()
    packages = {n.split(".")[0] for n in names} | {PACKAGE}
    todo = list(names)
    seen: dict[str, Path] = {}
    while todo:
        name = todo.pop()
        if name in seen or name in EXCLUDED:
            continue
        path = module_file(name, root)
        if path is None:
            if name in names:
                raise ModuleNotFoundError(f"no source file for module {name!r} under {root}")
            continue  # `from pkg import function`: not a module
        seen[name] = path
        todo.extend(_imported(name, path, packages, root) - set(seen))
    return seen


def code_fingerprint(*names: str, root: Path | None = None) -> str:
    """sha256 (first 16 hex digits) of the sources of ``names`` and everything they import.

    Args:
        names: dotted module names, e.g. ``"lvwlib.core.train"``.
        root: folder holding the ``lvwlib`` package (default: :func:`code_root`).
    """
    digest = hashlib.sha256()
    for name, path in sorted(module_closure(*names, root=root).items()):
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]
