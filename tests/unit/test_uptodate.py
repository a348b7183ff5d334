"""The stamp that lets a warm `make reproduce` skip its notebooks: every way it must go stale."""

from __future__ import annotations

import os
from pathlib import Path

from lvwlib.experiment.uptodate import STAMP_NAME, main, stale_reason


def _project(tmp_path: Path) -> tuple[Path, Path, Path]:
    root = tmp_path / "proj"
    (root / "lvwlib").mkdir(parents=True)
    (root / "notebooks").mkdir()
    (root / "lvwlib" / "a.py").write_text("x = 1\n")
    (root / "notebooks" / "n.ipynb").write_text("{}\n")
    (root / "Makefile").write_text("all:\n")
    params = root / "p.yaml"
    params.write_text(f"cache_dir: {root / 'cache'}\n")
    (root / "cache" / "kind").mkdir(parents=True)
    (root / "cache" / "kind" / "k.pt").write_bytes(b"1")
    results = root / "results"
    results.mkdir()
    (results / "table1.csv").write_text("a,b\n")
    return root, params, results


def _write(monkeypatch, root, params, results, extra="imagenette"):
    monkeypatch.setattr("lvwlib.experiment.uptodate.project_root", lambda: root)
    assert main(["write", str(results), "--params", str(params), "--extra", extra]) == 0
    assert (results / STAMP_NAME).exists()


def test_fresh_stamp_is_up_to_date_and_each_change_makes_it_stale(tmp_path, monkeypatch):
    root, params, results = _project(tmp_path)
    assert stale_reason(results, params, "imagenette", root) == "no stamp of a finished run"
    _write(monkeypatch, root, params, results)
    assert stale_reason(results, params, "imagenette", root) is None
    assert main(["check", str(results), "--params", str(params), "--extra", "imagenette"]) == 0
    # another dataset list (a make variable)
    assert "changed" in stale_reason(results, params, "imagewoof", root)
    # a lock file does not count; a new cache entry does
    (root / "cache" / "kind" / ".k.lock").write_text("")
    assert stale_reason(results, params, "imagenette", root) is None
    (root / "cache" / "kind" / "new.pt").write_bytes(b"2")
    assert "cache" in stale_reason(results, params, "imagenette", root)
    assert main(["check", str(results), "--params", str(params), "--extra", "imagenette"]) == 1


def test_code_params_and_results_changes_are_seen(tmp_path, monkeypatch):
    root, params, results = _project(tmp_path)
    _write(monkeypatch, root, params, results)
    (root / "lvwlib" / "a.py").write_text("x = 2\n")
    assert "code" in stale_reason(results, params, "imagenette", root)
    _write(monkeypatch, root, params, results)
    params.write_text(params.read_text() + "seeds: [0]\n")
    assert "params" in stale_reason(results, params, "imagenette", root)
    _write(monkeypatch, root, params, results)
    (results / "table1.csv").unlink()
    assert "table1.csv" in stale_reason(results, params, "imagenette", root)
    _write(monkeypatch, root, params, results)
    entry = root / "cache" / "kind" / "k.pt"
    os.utime(entry, ns=(entry.stat().st_atime_ns, entry.stat().st_mtime_ns + 10**9))  # recomputed in place
    assert "cache" in stale_reason(results, params, "imagenette", root)
