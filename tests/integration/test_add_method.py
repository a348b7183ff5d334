"""Adding a method is one file: a toy method module, written to a temporary folder, registers itself
and runs through a tiny Table 1 cell, the params schema, the cache keys and ``load_model``,
with no other file changed."""

from __future__ import annotations

import importlib
import io
import sys
import textwrap

import pytest

from lvwlib.core.config import CellsConfig, load_params
from lvwlib.experiment import keys
from lvwlib.experiment.config import experiment_from_params
from lvwlib.experiment.models import load_model
from lvwlib.experiment.runner import run_cells
from lvwlib.experiment.stages import prepare
from lvwlib.methods import registry
from lvwlib.store.paths import resolve

TOY = textwrap.dedent('''
    """A toy method: fixed random prototypes on the ImageNet tail's features; only the last layer trains."""

    import torch
    from torch import nn

    from lvwlib.methods.registry import Fitted, Method, register


    class ToyNet(nn.Module):
        def __init__(self, tail, channels, classes, words):
            super().__init__()
            self.tail = tail
            generator = torch.Generator().manual_seed(0)
            self.register_buffer("prototypes", torch.rand(words, channels, generator=generator))
            self.last = nn.Linear(words, classes)

        def similarity(self, x):  # [B, M, h, w]: minus the squared distance of each patch to each prototype
            f = self.tail(x)
            return -((f[:, None] - self.prototypes[None, :, :, None, None]) ** 2).sum(2)

        def forward(self, x):
            return self.last(self.similarity(x).amax((2, 3)))


    def fit(ctx):
        torch.manual_seed(ctx.seed)
        model = ToyNet(ctx.initial_tail("imagenet"), ctx.feature_channels, ctx.num_classes, ctx.settings["words"])
        feats, labels = ctx.data("train")
        with torch.no_grad():
            scores = model.similarity(feats[:, 0].float()).amax((2, 3))  # the prototypes are fixed
        opt = torch.optim.Adam(model.last.parameters(), lr=0.05)
        for _ in range(30):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model.last(scores), labels)
            loss.backward()
            opt.step()
        return Fitted(model.eval(), {"final_loss": loss.item()})


    def explain(model, x, m):
        with torch.no_grad():
            sim = model.similarity(x)
            score = sim.amax((2, 3))
            ids = score.topk(min(m, sim.shape[1]), dim=1).indices
            maps = torch.gather(sim, 1, ids[:, :, None, None].expand(-1, -1, *sim.shape[2:]))
            return model.last(score), maps, ids


    register(Method(
        name="toy",
        label="Toy words",
        code=(__name__,),
        settings=lambda run, sections, seed: {"words": 4},
        fit=fit,
        build_args=lambda model: {"words": int(model.prototypes.shape[0])},
        rebuild=lambda args, tail, channels, classes: ToyNet(tail, channels, classes, args["words"]),
        explain=explain,
        word_maps=lambda model, x: model.similarity(x.float()),
    ))
''')


@pytest.fixture()
def toy(tmp_path, monkeypatch):
    """The toy method imported from its own file; the registry is restored afterwards."""
    before = registry.names()
    (tmp_path / "toy_method.py").write_text(TOY)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("toy_method")
    try:
        yield tmp_path / "toy_method.py"
    finally:
        registry.unregister("toy")
        sys.modules.pop(module.__name__, None)
    assert registry.names() == before


def test_an_unregistered_method_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="methods.0: Input should be 'base'"):
        experiment_from_params({"methods": ["toy"]})
    with pytest.raises(ValueError, match="unknown method 'toy'; known: base, protopnet"):
        registry.get("toy")


def test_a_method_in_one_file_runs_through_a_table1_cell_and_load_model(toy, tmp_path):
    assert registry.names()[-1] == "toy" and registry.label("toy") == "Toy words"
    params = load_params(resolve("params/tiny.yaml"))
    params.update(cache_dir=str(tmp_path / "cache"), methods=["base", "toy"])
    exp = experiment_from_params(params, "synthetic")  # the schema takes the registered name
    out = io.StringIO()
    report = run_cells(exp, CellsConfig(executor="inline"), out=out)
    assert report.ok, out.getvalue()
    assert "synthetic 0 toy: " in out.getvalue()
    row = {r["method"]: r for r in report.results()}["toy"]
    assert 0 <= row["accuracy"] <= 1 and 0 <= row["iou"] <= 1 and row["final_loss"] > 0

    model = load_model(params, "synthetic", "toy", 0)
    prep = prepare(exp, progress=False)
    x = prep.test_feats[:, 0].float()
    logits, maps, ids = model.explain(x, 2)
    assert logits.shape == (len(x), prep.num_classes) and maps.shape[:2] == ids.shape == (len(x), 2)
    accuracy = (logits.argmax(1) == prep.test_labels).float().mean().item()
    assert accuracy == pytest.approx(row["accuracy"])  # the model of the Table 1 row
    assert model.word_maps(x).shape[:2] == (len(x), 4) and model.label == "Toy words"

    # the explorer lists it and shows its explanation of a test image, IoU and all
    from lvwlib.ui.widgets import Explorer

    app = Explorer(params=params)
    assert ("Toy words", "toy") in app.method.options
    app.method.value = "toy"
    assert app.view is not None and 0.0 <= app.view["iou"] <= 1.0
    assert "predicted by Toy words" in app.status.value

    # its cache key follows its own file: an edit retrains it, and only it
    before = {m: keys.model_inputs(exp, m, 0, prep.feature_inputs) for m in ("base", "toy")}
    toy.write_text(toy.read_text() + "\n# an edit\n")
    after = {m: keys.model_inputs(exp, m, 0, prep.feature_inputs) for m in ("base", "toy")}
    assert after["base"] == before["base"] and after["toy"]["method_code"] != before["toy"]["method_code"]
