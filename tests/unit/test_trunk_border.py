"""Known answers of backbone.border (lvwlib.backbones.border): zeros is today's trunk, reflect gives a
constant image constant features, context keeps the centre of the padded image's grid, in both runtimes."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from lvwlib.backbones import border as bd
from lvwlib.backbones import split as bb
from lvwlib.backbones import trunk_features as tf
from lvwlib.core.config import BackboneConfig, to_dict

TINY = BackboneConfig(name="tiny", weights="none")
needs_onnx = pytest.mark.skipif(not tf.onnx_available(), reason="onnxruntime not installed")


def _images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _constant(size: int) -> torch.Tensor:
    """Two spatially constant images [2, 3, size, size] (a grey and a coloured one)."""
    x = torch.empty(2, 3, size, size)
    x[0] = 0.4
    x[1] = torch.tensor([0.9, 0.2, 0.6]).view(3, 1, 1)
    return x


def _spread(feats: torch.Tensor) -> float:
    """Largest deviation of any cell from its map's spatial mean, relative to the largest feature."""
    return ((feats - feats.mean((2, 3), keepdim=True)).abs().amax() / feats.abs().amax()).item()


def _trunk(cfg: BackboneConfig, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return bb.build_backbone(cfg).trunk(images)


@pytest.fixture(scope="module")
def lite0() -> dict[str, bb.SplitBackbone]:
    """EfficientNet-Lite0 (ImageNet weights of the installed package) with each border."""
    try:
        return {b: bb.build_backbone(BackboneConfig(weights="imagenet", border=b)) for b in bd.BORDERS}
    except (bb.WeightsUnavailableError, FileNotFoundError, ImportError) as err:
        pytest.skip(f"EfficientNet-Lite0 weights not available: {err}")


# ------------------------------------------------------------------------------------------- zeros


def test_zeros_is_the_default_and_todays_trunk_by_hand() -> None:
    assert BackboneConfig().border == "zeros" and to_dict(BackboneConfig())["border"] == "zeros"
    backbone = bb.build_backbone(TINY)
    assert list(dict(backbone.trunk.named_children())) == ["normalize", "conv1", "relu1", "conv2", "relu2"]
    assert all(m.padding_mode == "zeros" for m in backbone.trunk.modules() if isinstance(m, torch.nn.Conv2d))
    x = _images(2, 32)
    t = backbone.trunk
    by_hand = (x - 0.5) / 0.5
    for conv in (t.conv1, t.conv2):  # zero padding 1, stride 2: the trunk before issue 15
        by_hand = F.relu(F.conv2d(by_hand, conv.weight, conv.bias, stride=2, padding=1))
    with torch.no_grad():
        torch.testing.assert_close(t(x), by_hand, rtol=0, atol=0)


def test_zeros_trunk_is_not_constant_on_a_constant_image() -> None:
    assert _spread(_trunk(TINY, _constant(32))) > 1e-2  # the position code of zero padding


# ----------------------------------------------------------------------------------------- reflect


def test_reflect_gives_a_constant_image_constant_features() -> None:
    feats = _trunk(dataclasses.replace(TINY, border="reflect"), _constant(32))
    assert feats.shape == (2, 8, 8, 8)
    assert _spread(feats) < 1e-5


def test_reflect_changes_padding_only() -> None:
    zeros, reflect = bb.build_backbone(TINY), bb.build_backbone(dataclasses.replace(TINY, border="reflect"))
    assert zeros.trunk.state_dict().keys() == reflect.trunk.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(zeros.trunk.state_dict().values(),
                                                  reflect.trunk.state_dict().values(), strict=True))
    convs = [m for m in (*reflect.trunk.modules(), *reflect.tail.modules()) if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(m.padding_mode == "reflect" for m in convs)  # the tail's too


def test_reflect_same_conv_is_tf_same_with_reflected_pixels() -> None:
    """timm's SAME convolution (stride 2, the odd pixel at the end) with the pad reflected."""
    conv = torch.nn.Conv2d(2, 3, 5, stride=2)
    same = bd.ReflectSameConv2d(2, 3, 5, stride=2)
    same.load_state_dict(conv.state_dict())
    x = _images(1, 14)[:, :2]
    # SAME at 14 px, k 5, s 2: total padding (7 - 1) * 2 + 5 - 14 = 3 -> 1 before, 2 after
    expected = conv(F.pad(x, (1, 2, 1, 2), mode="reflect"))
    torch.testing.assert_close(same(x), expected)
    assert same(x).shape[-2:] == (7, 7)


def test_lite0_reflect_constant_image(lite0: dict[str, bb.SplitBackbone]) -> None:
    with torch.no_grad():
        zeros, reflect = lite0["zeros"].trunk(_constant(224)), lite0["reflect"].trunk(_constant(224))
    assert reflect.shape == zeros.shape == (2, 320, 7, 7)
    assert _spread(reflect) < 1e-5  # all 49 cells equal
    assert _spread(zeros) > 0.1
    same = [m for m in lite0["reflect"].trunk.modules() if isinstance(m, bd.ReflectSameConv2d)]
    assert len(same) == 5  # the stride-2 SAME convolutions of Lite0 (stem and four stages)


# ----------------------------------------------------------------------------------------- context


def test_context_keeps_the_centre_of_the_padded_grid() -> None:
    x = _images(3, 32, seed=1)
    context = _trunk(dataclasses.replace(TINY, border="context"), x)
    zeros = _trunk(TINY, x)
    # tiny: output stride 8 -> 8 px per side (48 px), trunk at stride 4 -> 12 x 12, 2 cells cropped
    wide = _trunk(TINY, F.pad(x, (8, 8, 8, 8), mode="reflect"))
    assert wide.shape[-2:] == (12, 12) and context.shape == zeros.shape == (3, 8, 8, 8)
    torch.testing.assert_close(context, wide[..., 2:-2, 2:-2], rtol=0, atol=0)
    assert not torch.allclose(context, zeros)  # the border cells see the image, not zeros


def test_context_pad_commutes_with_the_flip() -> None:
    x, pad = _images(2, 32, seed=2), bd.ContextPad(8)
    torch.testing.assert_close(pad(torch.flip(x, dims=[3])), torch.flip(pad(x), dims=[3]), rtol=0, atol=0)


def test_lite0_context_is_the_inner_7x7_of_a_9x9_run(lite0: dict[str, bb.SplitBackbone]) -> None:
    x = _images(2, 224, seed=3)
    with torch.no_grad():
        context = lite0["context"].trunk(x)
        wide = lite0["zeros"].trunk(F.pad(x, (32, 32, 32, 32), mode="reflect"))
    assert wide.shape == (2, 320, 9, 9) and context.shape == (2, 320, 7, 7)
    torch.testing.assert_close(context, wide[..., 1:-1, 1:-1], rtol=0, atol=1e-6)


def test_context_strides_and_errors() -> None:
    assert bd.context_cells("efficientnet_lite0", "head") == (32, 1)
    assert bd.context_cells("resnet34", "layer4") == (32, 2)
    with pytest.raises(ValueError, match="context needs a trunk with a feature grid"):
        bb.build_backbone(dataclasses.replace(TINY, tail="all", border="context"))
    with pytest.raises(ValueError, match="unknown backbone.border 'wrap'"):
        bb.build_backbone(dataclasses.replace(TINY, border="wrap"))


# ------------------------------------------------------------------------------- runtimes and keys


def _onnx_atol(trunk: torch.nn.Module, eager: torch.Tensor) -> float:
    """The float32 reordering bound of tests/unit/test_trunk_features.py (onnx_atol)."""
    convs = [m for m in trunk.modules() if isinstance(m, torch.nn.Conv2d)]
    fan_in = max(m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1] for m in convs)
    return 2 * math.sqrt(len(convs) * fan_in) * torch.finfo(torch.float32).eps * eager.abs().max().item()


@needs_onnx
@pytest.mark.parametrize("border", ["reflect", "context"])
def test_onnx_agrees_with_eager_on_tiny(border: str) -> None:
    trunk = bb.build_backbone(dataclasses.replace(TINY, border=border)).trunk
    x = _images(3, 32, seed=4)
    eager = tf.make_trunk_runner(trunk, "eager", 32)(x)
    onnx = tf.make_trunk_runner(trunk, "onnx", 32)(x)
    assert onnx.shape == eager.shape == (3, 8, 8, 8)
    torch.testing.assert_close(onnx, eager, atol=_onnx_atol(trunk, eager), rtol=0)


@needs_onnx
@pytest.mark.parametrize("border", ["reflect", "context"])
def test_onnx_agrees_with_eager_on_lite0(lite0: dict[str, bb.SplitBackbone], border: str) -> None:
    trunk = lite0[border].trunk
    x = _images(2, 224, seed=5)
    eager = tf.make_trunk_runner(trunk, "eager", 224)(x)
    onnx = tf.make_trunk_runner(trunk, "onnx", 224)(x)
    assert onnx.shape == (2, 320, 7, 7)
    torch.testing.assert_close(onnx, eager, atol=_onnx_atol(trunk, eager), rtol=0)


def test_feature_and_onnx_keys_follow_the_border() -> None:
    keys = {b: tf.trunk_onnx_path("c", dataclasses.replace(TINY, border=b), 32).name for b in bd.BORDERS}
    assert len(set(keys.values())) == 3
    assert tf.trunk_onnx_inputs(dataclasses.replace(TINY, border="context"), 32)["backbone"]["border"] == "context"
