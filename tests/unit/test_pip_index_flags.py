"""``make venv`` passes pip's index settings on to uv (.ci/pip_index_flags.py)."""

from __future__ import annotations

import importlib.util

from lvwlib.store.paths import project_root


def _module():
    spec = importlib.util.spec_from_file_location("pip_index_flags", project_root() / ".ci" / "pip_index_flags.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pip_settings_become_uv_options_once_each():
    lines = [
        "global.cert='/etc/ssl/certs/ca.crt'",
        "global.constraint='/etc/pip/constraints.txt'",
        "global.extra-index-url='file:///opt/a/simple file:///opt/b/simple'",
        "global.find-links='/opt/wheels'",
        ":env:.default-timeout='180'",
        ":env:.find-links='/opt/wheels'",  # the same folder from PIP_FIND_LINKS: passed once
        "user.index-url='https://mirror.example/simple'",
    ]
    assert _module().uv_flags(lines) == [
        "--cert", "/etc/ssl/certs/ca.crt",
        "--constraint", "/etc/pip/constraints.txt",
        "--extra-index-url", "file:///opt/a/simple", "--extra-index-url", "file:///opt/b/simple",
        "--find-links", "/opt/wheels",
        "--index-url", "https://mirror.example/simple",
    ]


def test_no_pip_settings_no_options():
    assert _module().uv_flags([]) == []
    assert _module().uv_flags(["global.timeout='60'", "not a setting"]) == []
