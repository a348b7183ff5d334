"""Every method's trained model is stored weights-only and reloads with the same explanations."""

from __future__ import annotations

import pytest
import torch

from lvwlib.core.config import load_params
from lvwlib.experiment.config import experiment_from_params
from lvwlib.experiment.models import ModelNotCachedError, TrainedModel, available_models, load_model
from lvwlib.experiment.stages import base_for_seed, prepare, run_method
from lvwlib.methods import registry
from lvwlib.store.paths import resolve

METHODS = registry.names()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    params = load_params(resolve("params/tiny.yaml"))
    params["cache_dir"] = str(tmp_path_factory.mktemp("cache"))
    exp = experiment_from_params(params)
    prep = prepare(exp, progress=False)
    base = base_for_seed(prep, 0, progress=False)
    results = {method: run_method(prep, base, method, 0, progress=False) for method in METHODS}
    return params, prep, base, results


@pytest.mark.parametrize("method", METHODS)
def test_model_reloads_weights_only_and_explains_as_evaluated(trained, method):
    params, prep, _, results = trained
    model = load_model(params, "synthetic", method, 0)
    assert isinstance(model, TrainedModel) and model.method == method
    x = prep.test_feats[:, 0].float()
    logits, maps, ids = model.explain(x, m=2)
    assert logits.shape == (x.shape[0], prep.num_classes)
    assert maps.dim() == 4 and maps.shape[0] == x.shape[0]
    assert (ids is None) == (not model.has_words) and (ids is None or ids.shape == maps.shape[:2])
    acc = (logits.argmax(1) == prep.test_labels).float().mean().item()
    assert acc == pytest.approx(results[method]["accuracy"])  # the same model as the Table 1 row
    # the stored file is plain tensors and containers only
    path = next(r["path"] for r in available_models(prep.cache_dir) if r["method"] == method)
    torch.load(path, weights_only=True)


@pytest.mark.parametrize("method", ["lvw", "protopnet", "protopshare", "prototree"])
def test_word_methods_have_push_sources_and_word_maps(trained, method):
    params, prep, _, _ = trained
    model = load_model(params, "synthetic", method, 0)
    words = model.words
    assert words is not None
    x = prep.test_feats[:3, 0].float()
    wmaps = model.word_maps(x)
    assert wmaps.shape[:2] == (3, words.num_words)
    n_train, (h, w) = prep.train_feats.shape[0], wmaps.shape[-2:]  # the latent grid
    for src in words.push:
        assert 0 <= src.image < n_train and 0 <= src.row < h and 0 <= src.col < w
    if method != "prototree":
        assert words.class_weights.shape == (prep.num_classes, words.num_words)
        # a pushed word IS its source patch: its distance there is ~0, so the map peaks there
        j = 0
        src = words.push[j]
        src_map = model.word_maps(prep.train_feats[src.image : src.image + 1, 0].float())[0, j]  # push: unflipped
        assert src_map.argmax().item() == src.row * w + src.col
    _, maps, ids = model.explain(x, 2)
    assert ids.shape == maps.shape[:2]
    if method != "prototree":  # the maps are the chosen words' maps
        assert torch.allclose(maps, torch.gather(wmaps, 1, ids[:, :, None, None].expand_as(maps)))


def test_missing_model_says_what_to_run(trained):
    params = dict(trained[0])
    with pytest.raises(ModelNotCachedError, match="make reproduce"):
        load_model(params, "synthetic", "lvw", seed=7)
    with pytest.raises(ValueError, match="unknown method"):
        load_model(params, "synthetic", "lvvw", seed=0)
