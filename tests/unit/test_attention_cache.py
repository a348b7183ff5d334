"""Grad-CAM known answer, flip pairing and the cache's staleness guard."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from lvwlib.core.base_model import BaseModel
from lvwlib.core.batches import iterate_batches
from lvwlib.core.gradcam import gradcam_maps
from lvwlib.store.cache import StaleCacheError, cache_key, cached


def _linear_base_model() -> BaseModel:
    # tail = identity on 2 channels; classifier weights chosen by hand
    model = BaseModel(nn.Identity(), feature_channels=2, num_classes=2)
    with torch.no_grad():
        model.classifier.weight.copy_(torch.tensor([[1.0, -1.0], [-2.0, 1.0]]))
        model.classifier.bias.zero_()
    return model


def test_gradcam_by_hand():
    # one image, 2 channels on a 2x2 grid
    a0 = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    a1 = torch.tensor([[0.0, 2.0], [0.0, 1.0]])
    x = torch.stack([a0, a1])[None]  # [1, 2, 2, 2]
    feats = torch.stack([x, x.flip(-1)], dim=1)  # [1, 2, 2, 2, 2]
    model = _linear_base_model()
    # logits: GAP = (0.25, 0.75): class 0 -> -0.5, class 1 -> 0.25 => predicted 1.
    # Grad-CAM weights for class 1 = W[1] / (h*w) = (-0.5, 0.25);
    # cam = relu(-0.5*a0 + 0.25*a1) = relu([[-0.5, 0.5], [0, 0.25]]) = [[0, .5], [0, .25]] -> /0.5
    cams = gradcam_maps(model, feats, progress=False)
    expected = torch.tensor([[0.0, 1.0], [0.0, 0.5]])
    assert torch.allclose(cams[0, 0], expected, atol=1e-5)
    # the flipped image has its own (flipped) map
    assert torch.allclose(cams[0, 1], expected.flip(-1), atol=1e-5)
    # target = label 0: weights (0.25, -0.25): relu([[0.25, -.5], [0, -.25]]) -> [[1, 0], [0, 0]]
    cams0 = gradcam_maps(model, feats, torch.tensor([0]), target="label", progress=False)
    assert torch.allclose(cams0[0, 0], torch.tensor([[1.0, 0.0], [0.0, 0.0]]), atol=1e-5)


def test_gradcam_leaves_no_hooks():
    model = _linear_base_model()
    feats = torch.rand(2, 2, 2, 2, 2)
    gradcam_maps(model, feats, progress=False)
    assert not model.tail._forward_hooks and not model._forward_hooks


def test_batches_pair_features_with_maps_of_the_same_flip():
    feats = torch.arange(8.0).view(4, 2, 1, 1, 1)  # value encodes (image, flip)
    cams = torch.arange(8.0).view(4, 2, 1, 1)
    g = torch.Generator().manual_seed(0)
    for batch in iterate_batches(feats, torch.zeros(4, dtype=torch.long), 3, shuffle=True,
                                 random_flip=True, generator=g, cams=cams):
        assert torch.equal(batch.x.flatten(), batch.cam.flatten())
        assert torch.equal(batch.x.flatten(), (batch.index * 2 + batch.flip).float())


def test_cache_key_changes_with_any_field():
    base = {"data": {"name": "a", "image_size": 224}, "backbone": {"tail": "head"}}
    other = {"data": {"name": "a", "image_size": 192}, "backbone": {"tail": "head"}}
    assert cache_key(base) != cache_key(other)
    assert cache_key(base) == cache_key(json.loads(json.dumps(base)))


def test_changed_config_is_never_served_a_stale_cache(tmp_path):
    calls = []

    def compute(value):
        def inner():
            calls.append(value)
            return torch.tensor([value])
        return inner

    a = cached(tmp_path, "features", {"size": 1}, compute(1.0))
    b = cached(tmp_path, "features", {"size": 1}, compute(99.0))  # hit: not recomputed
    c = cached(tmp_path, "features", {"size": 2}, compute(2.0))  # changed config: recomputed
    assert a.item() == b.item() == 1.0 and c.item() == 2.0 and calls == [1.0, 2.0]


def test_cache_entry_from_another_config_is_refused(tmp_path):
    cached(tmp_path, "features", {"size": 1}, lambda: torch.tensor([1.0]))
    key1, key2 = cache_key({"size": 1}), cache_key({"size": 2})
    folder = tmp_path / "features"
    # someone copies the entry of config 1 under the key of config 2
    (folder / f"{key2}.pt").write_bytes((folder / f"{key1}.pt").read_bytes())
    (folder / f"{key2}.json").write_text((folder / f"{key1}.json").read_text())
    with pytest.raises(StaleCacheError, match="another config"):
        cached(tmp_path, "features", {"size": 2}, lambda: torch.tensor([2.0]))


def test_failed_compute_leaves_nothing_behind(tmp_path):
    def boom():
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        cached(tmp_path, "features", {"size": 3}, boom)
    assert not list((tmp_path).rglob("*.pt"))
