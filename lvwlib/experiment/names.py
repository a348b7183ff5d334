"""Safe result names for datasets, shared by the notebooks and the Makefile.

A dataset is a registry name (``imagenette``) or a path to the user's own class
folders (``/home/me/pets``). Results go to ``<results>/<name>/`` and
``<results>/notebooks/0X_<...>_<name>.ipynb``, so ``name`` must be one plain
path component: a registry name is kept as is; a folder becomes its sanitised
base name plus a short hash of its absolute path, so that ``/a/pets`` and
``/b/pets`` (or a folder called ``imagenette``) never share a results folder,
and a path can never make results land inside the dataset.

Command line (used by ``make reproduce``)::

    python -m lvwlib names name /path/to/folders   # prints e.g. folders-3fa2c1d0
    python -m lvwlib names abs ../folders          # prints /abs/path/folders
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from pathlib import Path

SAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
MAX_STEM = 48  # characters of the folder's base name kept in the result name


def _is_registry_name(text: str) -> bool:
    """A bare word (no separator, not starting with ``.`` or ``~``) names a registered set.

    The registry itself is not imported: this module runs once per dataset in
    ``make reproduce`` and must start fast (no torch). A bare word that is not
    registered fails later, in :func:`lvwlib.data.load_dataset`, with the list
    of registered names.
    """
    return not any(ch in text for ch in "/\\") and not text.startswith((".", "~"))


def results_name(dataset: str) -> str:
    """One safe path component naming ``dataset``'s results.

    Registry names (bare words of safe characters) are returned unchanged; a path gives
    ``<sanitised base name>-<8 hex of sha256(absolute path)>``. The result has
    only ``[A-Za-z0-9._-]``, does not start with a dot and is never empty.
    """
    text = str(dataset).strip()
    if not text:
        raise ValueError("empty dataset name")
    if _is_registry_name(text):
        safe = SAFE_CHARS.sub("_", text).strip("._-")
        return text if safe == text else f"{safe or 'dataset'}-{_digest(text)}"
    path = Path(text).expanduser().resolve()
    stem = SAFE_CHARS.sub("_", path.name).strip("._-")[:MAX_STEM] or "dataset"
    return f"{stem}-{_digest(str(path))}"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def absolute_dataset(dataset: str) -> str:
    """A path-like ``dataset`` made absolute (notebooks run in notebooks/, make in the root)."""
    text = str(dataset).strip()
    if _is_registry_name(text):
        return text
    return os.path.abspath(Path(text).expanduser())


USAGE = """usage: python -m lvwlib names name DATASET    safe results name of DATASET
       python -m lvwlib names abs DATASET     DATASET with a path made absolute
       python -m lvwlib names list DATASET... json list of absolute datasets (papermill -y)"""


def main(argv: list[str] | None = None) -> int:
    """Command line of the Makefile: ``name``, ``abs`` or ``list`` (see :data:`USAGE`)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 2 and args[0] == "name":
        print(results_name(args[1]))
    elif len(args) == 2 and args[0] == "abs":
        print(absolute_dataset(args[1]))
    elif args and args[0] == "list":
        print(json.dumps([absolute_dataset(a) for a in args[1:]]))
    else:
        print(USAGE, file=sys.stderr)
        return 2
    return 0
