"""Print pip's package-index configuration as uv flags (``make venv`` installs with uv).

uv does not read pip's configuration files or ``PIP_*`` variables, so a machine whose pip is
pointed at a local index or wheel folder (an offline mirror, a company index, a version cap in a
constraints file) would send uv to PyPI instead. This reads ``pip config list`` (files and
environment) and prints the same settings as uv options, one shell-quoted line; nothing when pip
has none. Run with the venv's pip: ``python .ci/pip_index_flags.py .venv/bin/pip``.
"""

from __future__ import annotations

import shlex
import subprocess
import sys

# pip setting -> uv option (each value of a space-separated list becomes one option)
OPTIONS = {
    "index-url": "--index-url",
    "extra-index-url": "--extra-index-url",
    "find-links": "--find-links",
    "constraint": "--constraint",
    "cert": "--cert",
}


def uv_flags(config_lines: list[str]) -> list[str]:
    """uv options for the lines of ``pip config list`` (``global.find-links='/opt/wheels'``)."""
    flags: list[str] = []
    seen: set[tuple[str, str]] = set()
    for line in config_lines:
        key, sep, value = line.partition("=")
        option = OPTIONS.get(key.rsplit(".", 1)[-1]) if sep else None
        if option is None:
            continue
        for item in shlex.split(value):
            for part in item.split():
                if (option, part) not in seen:  # a setting in two files (or a file and PIP_*) once
                    seen.add((option, part))
                    flags += [option, part]
    return flags


def main() -> None:
    pip = sys.argv[1] if len(sys.argv) > 1 else "pip"
    listed = subprocess.run([pip, "config", "list"], capture_output=True, text=True, check=False).stdout
    print(shlex.join(uv_flags(listed.splitlines())))


if __name__ == "__main__":
    main()
