"""The package's layers, read from the sources with ``ast``: imports point down only, no loops.

Layer order (lowest first): store, core, data | backbones, methods, experiment, paper, ui,
and the command line (``lvwlib.__main__``) on top. A module may import its own subpackage
and any lower layer; two subpackages of one layer never import each other. Lazy imports
(inside functions) count like top-level ones: a loop dodged by a late import is still a loop.
"""

from __future__ import annotations

import ast
from pathlib import Path

import lvwlib

PACKAGE = Path(lvwlib.__file__).parent
LAYERS = {
    "store": 0,
    "core": 1,
    "data": 2,
    "backbones": 2,
    "methods": 3,
    "experiment": 4,
    "paper": 5,
    "ui": 6,
    "__main__": 7,
    "__init__": 0,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def resolve(node: ast.ImportFrom, name: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    parts = name.split(".") if is_package else name.split(".")[:-1]
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join([*parts, node.module] if node.module else parts)


def lvwlib_modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The lvwlib modules ``name`` imports (a ``from pkg import sub`` counts as importing sub)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = resolve(node, name, path.name == "__init__.py")
            subs = {f"{module}.{a.name}" for a in node.names} & known
            found.update(subs or {module})
    return {m for m in found if m in known and m != name}


def layer_of(module: str) -> tuple[str, int]:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    assert top in LAYERS, f"{module} is in no layer: add its subpackage to LAYERS (and to the README's map)"
    return top, LAYERS[top]


def graph() -> dict[str, set[str]]:
    mods = lvwlib_modules()
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def test_every_import_points_down_or_stays_in_its_subpackage() -> None:
    bad = []
    for module, targets in graph().items():
        pkg, rank = layer_of(module)
        for target in targets:
            tpkg, trank = layer_of(target)
            if tpkg == "__init__" or tpkg == pkg:
                continue
            if trank >= rank:
                bad.append(f"{module} ({pkg}, layer {rank}) imports {target} ({tpkg}, layer {trank})")
    assert not bad, "imports that do not point down:\n" + "\n".join(sorted(bad))


def test_no_import_loops() -> None:
    g = graph()
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    loops: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(g[node]):
            if state.get(nxt) == 1:
                loops.append([*stack[stack.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(g):
        if node not in state:
            visit(node, [])
    assert not loops, "import loops:\n" + "\n".join(" -> ".join(loop) for loop in loops)


def test_the_checker_sees_a_loop_and_an_upward_import(tmp_path: Path) -> None:
    """The checks above can fail: a planted upward import is reported."""
    path = tmp_path / "m.py"
    path.write_text("from lvwlib.ui import widgets\nfrom lvwlib.store import cache\n")
    found = imports_of("lvwlib.core.m", path, {"lvwlib.ui.widgets", "lvwlib.store.cache"})
    assert found == {"lvwlib.ui.widgets", "lvwlib.store.cache"}
    assert layer_of("lvwlib.ui.widgets")[1] > layer_of("lvwlib.core.m")[1]
