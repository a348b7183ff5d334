"""A full disk while writing the cache or a result: a clear error naming the file, no partial
entry or file left, and a rerun after space is freed completes (lvwlib.store).

The disk is "filled" by making the write raise ENOSPC after it has written part of its bytes,
as a real full disk does.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
import torch

from lvwlib.store import cache as cache_mod
from lvwlib.store.cache import cache_key, cached, cached_together
from lvwlib.store.records import DiskFullError, save_with, write_json, write_text

INPUTS = {"what": "features", "n": 3}


def _full_disk_save(value, path) -> None:
    """torch.save that writes half its bytes, then finds the disk full."""
    Path(path).write_bytes(b"\x80\x02half a pickle")
    raise OSError(errno.ENOSPC, "No space left on device")


def _files(folder: Path) -> list[str]:
    """Every file under ``folder`` but the (empty, kept by design) key locks."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".lock"))


def test_full_disk_while_writing_a_cache_value(tmp_path, monkeypatch):
    monkeypatch.setattr(cache_mod.torch, "save", _full_disk_save)
    calls = []
    with pytest.raises(DiskFullError, match="no space left on the disk while writing") as info:
        cached(tmp_path, "features", INPUTS, lambda: calls.append(1) or torch.ones(3))
    key = cache_key(INPUTS)
    assert str(tmp_path / "features" / f"{key}.pt") in str(info.value)  # names the file
    assert info.value.errno == errno.ENOSPC and isinstance(info.value, OSError)
    assert _files(tmp_path) == []  # no temporary file, no half entry
    monkeypatch.undo()  # space freed: the rerun computes and stores the entry
    assert torch.equal(cached(tmp_path, "features", INPUTS, lambda: torch.ones(3)), torch.ones(3))
    assert _files(tmp_path) == [f"features/{key}.json", f"features/{key}.pt"]
    assert torch.equal(cached(tmp_path, "features", INPUTS, lambda: pytest.fail("recomputed")), torch.ones(3))


def test_full_disk_while_writing_the_entry_record_removes_its_value(tmp_path, monkeypatch):
    real = Path.write_text

    def full_for_json(self, *args, **kwargs):
        if ".json." in self.name:  # the temporary file of the entry's json
            real(self, '{"inputs": {"half', encoding="utf-8")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_for_json)
    with pytest.raises(DiskFullError, match=r"features/[0-9a-f]{16}\.json"):
        cached(tmp_path, "features", INPUTS, lambda: torch.ones(3))
    assert _files(tmp_path) == []  # the value written before is gone with it: no half entry
    with pytest.raises(DiskFullError):
        cached_together(tmp_path, "gradcam", [INPUTS, {**INPUTS, "n": 4}], [lambda: 1, lambda: 2])
    assert _files(tmp_path) == []
    monkeypatch.undo()
    assert cached_together(tmp_path, "gradcam", [INPUTS, {**INPUTS, "n": 4}], [lambda: 1, lambda: 2]) == [1, 2]
    assert len(_files(tmp_path)) == 4


def test_full_disk_while_writing_a_result_keeps_the_old_one(tmp_path):
    result = tmp_path / "results" / "table1.csv"
    write_text(result, "old, complete\n")

    def full(tmp: Path) -> None:
        tmp.write_text("new, half")
        raise OSError(errno.EDQUOT, "Disk quota exceeded")

    with pytest.raises(DiskFullError, match=f"writing {result}"):
        save_with(result, full)
    assert result.read_text() == "old, complete\n"
    assert sorted(p.name for p in result.parent.iterdir()) == ["table1.csv"]
    write_json(result.with_suffix(".json"), {"rerun": True})  # space freed
    assert json.loads(result.with_suffix(".json").read_text()) == {"rerun": True}


def test_other_write_errors_pass_through_unchanged(tmp_path):
    def denied(tmp: Path) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    with pytest.raises(PermissionError) as info:
        save_with(tmp_path / "x.pt", denied)
    assert not isinstance(info.value, DiskFullError)
    assert list(tmp_path.iterdir()) == []
