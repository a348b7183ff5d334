"""Code fingerprints in cache keys (an edit recomputes what it affects) and provenance."""

from __future__ import annotations

import json
import textwrap

from lvwlib.store.cache import cached
from lvwlib.store.fingerprint import code_fingerprint, module_closure
from lvwlib.store.records import RunRecord, cache_events


def _package(root):
    """A two-module package: train imports losses; viz imports nothing."""
    pkg = root / "fakepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "losses.py").write_text("def loss(x):\n    return x * 2\n")
    (pkg / "train.py").write_text("from fakepkg.losses import loss\n\ndef train(x):\n    return loss(x) + 1\n")
    (pkg / "viz.py").write_text("def show():\n    return 'picture'\n")
    return pkg


def _train_value(root):
    """What 'training' computes with the package as it is on disk now."""
    namespace: dict = {}
    exec((root / "fakepkg" / "losses.py").read_text(), namespace)
    return namespace["loss"](3) + 1


def test_closure_follows_imports_and_nothing_else(tmp_path):
    _package(tmp_path)
    assert set(module_closure("fakepkg.train", root=tmp_path)) == {"fakepkg.train", "fakepkg.losses"}
    assert set(module_closure("fakepkg.viz", root=tmp_path)) == {"fakepkg.viz"}


def test_editing_a_loss_retrains_and_editing_other_code_does_not(tmp_path):
    pkg = _package(tmp_path)
    calls = []

    def run():
        return cached(
            tmp_path / "cache", "models", {"lr": 0.1},
            lambda: calls.append(1) or _train_value(tmp_path),
            code=code_fingerprint("fakepkg.train", root=tmp_path),
        )

    assert run() == 7 and len(calls) == 1
    assert run() == 7 and len(calls) == 1  # same code: served from the cache
    (pkg / "viz.py").write_text("def show():\n    return 'another picture'\n")
    assert run() == 7 and len(calls) == 1  # viz is not imported by train: still cached
    (pkg / "losses.py").write_text(textwrap.dedent("def loss(x):\n    return x * 3\n"))
    assert run() == 10 and len(calls) == 2  # the loss changed: a fresh artefact
    assert len(list((tmp_path / "cache" / "models").glob("*.pt"))) == 2


def test_lvwlib_fingerprints_depend_on_the_modules_they_import():
    from lvwlib.methods import registry

    closure = module_closure(*registry.get("lvw").code)
    assert "lvwlib.core.losses" in closure and "lvwlib.core.push" in closure
    assert "lvwlib.methods.srae.model" not in closure and "lvwlib.paper.viz" not in closure
    # a method's key takes in its own code, not the other methods' (nor the package that registers them)
    for name in registry.names():
        others = {m for m in module_closure(*registry.get(name).code) if m.startswith("lvwlib.methods.")}
        assert "lvwlib.methods" not in module_closure(*registry.get(name).code)
        assert others <= {*registry.get(name).code, "lvwlib.methods.registry", "lvwlib.methods.protonet",
                          "lvwlib.methods.prototree.tree", "lvwlib.methods.srae.model"}, name


def test_entries_record_provenance_and_run_records_report_hits(tmp_path):
    with RunRecord(tmp_path / "out", {"x": 1}) as rec:
        assert rec is not None
        cached(tmp_path / "cache", "features", {"a": 1}, lambda: 5)
        cached(tmp_path / "cache", "features", {"a": 1}, lambda: 6)
    meta = json.loads(next((tmp_path / "cache" / "features").glob("*.json")).read_text())
    assert meta["inputs"]["a"] == 1
    prov = meta["provenance"]
    assert {"commit", "dirty", "wall_time_s", "computed"} <= set(prov) and prov["wall_time_s"] >= 0
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert record["cache"]["hits"] == 1 and record["cache"]["computed"] == 1
    hit = record["cache"]["entries"][1]
    assert hit["hit"] is True and hit["computed"] == prov["computed"]  # the computing run's time
    assert cache_events()[-1]["hit"] is True
