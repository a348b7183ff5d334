"""A user's dataset (a folder path, not a registry name) gets a Table 1 column of its own, named
by its results name, after the paper's six (not run here), with no paper numbers in it; its rows,
the random map's included, are all there; and its folder is never written to."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from lvwlib.core.config import load_params
from lvwlib.experiment.names import results_name
from lvwlib.paper import table1
from lvwlib.store.paths import resolve


def _folder(root: Path) -> Path:
    """train/test class folders of 16 px PNGs, one colour per class."""
    for split, n in (("train", 6), ("test", 3)):
        for c, (name, colour) in enumerate((("cat", (200, 30, 30)), ("dog", (30, 30, 200)))):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                arr = np.zeros((16, 16, 3), dtype=np.uint8) + np.array(colour, dtype=np.uint8)
                arr[(i + c) % 8 : (i + c) % 8 + 6, 4:10] = 255  # a bright patch that moves
                Image.fromarray(arr).save(root / split / name / f"{i}.png")
    return root


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


def test_users_table1_has_its_own_column_after_the_papers(tmp_path, monkeypatch):
    monkeypatch.setenv("LVW_CACHE", str(tmp_path / "lvw_cache"))
    data = _folder(tmp_path / "My Photos" / "pets")
    before = _files(data)
    params = load_params(resolve("params/tiny.yaml"))
    params.update(cache_dir=str(tmp_path / "cache"), methods=["base"])
    datasets = [str(data)]
    rows = table1.run_rows(params, datasets, progress=False)
    chance = table1.chance_rows(params, datasets, progress=False)
    name = results_name(str(data))
    assert set(rows) == {name} and set(chance["dataset"]) == {name}
    md = table1.write_table1(table1.table1_long(params, datasets, rows, chance), tmp_path / "results")
    header = next(line for line in md.splitlines() if line.startswith("| method"))
    columns = [c.strip() for c in header.strip().strip("|").split("|")]
    assert columns[1:] == ["STL10 (ours: imagenette)", "Oxford Flower (ours: flowers102)",
                           "Oxford-IIIT Pets (no offline data)", "Stanford-Dogs (ours: imagewoof)",
                           "Food-101 (ours: food101_10)", "AWA2 (ours: animals22)", f"{name} (ours only)"]
    base = next(line for line in md.splitlines() if line.startswith("| Base + Grad-CAM"))
    assert "not run · paper 87.40" in base and base.rstrip(" |").endswith("± 0.00")  # ours only, last
    assert "| Random map" in md and "None" not in md and "nan" not in md
    assert f"- **{name} (ours only)**: A dataset of your own" in md
    assert (tmp_path / "results" / "table1.md").read_text() == md
    assert _files(data) == before, "the user's dataset folder was written to"
