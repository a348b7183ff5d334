"""Devices, batch sources (cached and streamed), shards and the streaming path on the CPU."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch
from torch import nn

from lvwlib.core.base_model import BaseModel
from lvwlib.core.batches import CachedSource, epoch_plan, iterate_batches, shard
from lvwlib.core.config import RunConfig, replace
from lvwlib.core.devices import Runtime, resolve_device, runtime_from, to_device
from lvwlib.core.gradcam import gradcam_maps
from lvwlib.core.streaming import FlipCamDataset, StreamingSource, use_streaming
from lvwlib.data.images import TensorImageDataset


def test_resolve_device():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            resolve_device("cuda")


def test_runtime_amp_modes():
    with pytest.raises(ValueError, match="amp must be one of"):
        Runtime(torch.device("cpu"), "fp8")
    cpu_bf16 = runtime_from("cpu", "bf16")
    assert not cpu_bf16.amp_active and cpu_bf16.grad_scaler() is None  # amp is CUDA only
    with cpu_bf16.autocast():
        assert not torch.is_autocast_enabled("cpu")
    half = torch.tensor([1.5], dtype=torch.float16)
    assert to_device(half, Runtime()).dtype == torch.float32


def test_shard_weights_recover_the_global_mean():
    idx = torch.tensor([7, 3, 5, 1, 9])
    a, wa = shard(idx, 0, 2)
    b, wb = shard(idx, 1, 2)
    assert a.tolist() == [7, 5, 9] and b.tolist() == [3, 1]
    assert (wa, wb) == (pytest.approx(1.2), pytest.approx(0.8))  # 3*2/5, 2*2/5
    # DDP averages the ranks' weighted means: (1.2 * mean_a + 0.8 * mean_b) / 2 = global mean
    values = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    ddp = (wa * values[:3].mean() + wb * values[3:].mean()) / 2
    assert ddp.item() == pytest.approx(values.mean().item())
    # a rank left without images runs a weight-0 copy of the first one
    empty, w = shard(torch.tensor([4]), 1, 2)
    assert empty.tolist() == [4] and w == 0.0
    assert shard(idx, 0, 1) == (idx, 1.0)


def _feats(n=5):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, 3, 4, 4, generator=g)
    feats = torch.stack([x, x.flip(-1)], dim=1).half()  # [N, 2, 3, 4, 4]
    cams = torch.rand(n, 2, 2, 2, generator=g)
    return feats, torch.arange(n) % 2, cams


def test_cached_source_one_process_is_iterate_batches():
    feats, labels, cams = _feats()
    source = CachedSource(feats, labels, cams)
    got = list(source.train_batches(2, torch.Generator().manual_seed(3), with_cams=True))
    ref = list(iterate_batches(feats, labels, 2, shuffle=True, random_flip=True,
                               generator=torch.Generator().manual_seed(3), cams=cams))
    assert len(got) == len(ref) == 3
    for (b, w), r in zip(got, ref, strict=True):
        assert w == 1.0 and torch.equal(b.x, r.x) and torch.equal(b.cam, r.cam) and torch.equal(b.index, r.index)


def test_cached_source_shards_partition_the_global_batches():
    feats, labels, cams = _feats()
    one = list(CachedSource(feats, labels, cams).train_batches(4, torch.Generator().manual_seed(3), True))
    ranks = [list(CachedSource(feats, labels, cams, rank=r, world=2).train_batches(
        4, torch.Generator().manual_seed(3), True)) for r in (0, 1)]
    for k, (batch, _) in enumerate(one):
        parts = [ranks[r][k][0] for r in (0, 1) if ranks[r][k][1] > 0]  # weight 0: a placeholder
        assert sorted(torch.cat([p.index for p in parts]).tolist()) == sorted(batch.index.tolist())
        for p in parts:  # each rank's images come with the flip and map of the global plan
            pos = [batch.index.tolist().index(i) for i in p.index.tolist()]
            assert torch.equal(p.x, batch.x[pos]) and torch.equal(p.cam, batch.cam[pos])
    # ordered batches: rank r holds images r, r + 2, ...
    idx = [b.index.tolist() for b in CachedSource(feats, labels, rank=1, world=2).ordered_batches(8, (0, 1))]
    assert idx == [[1, 3]]


def _images(n=4, size=8):
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(n, 3, size, size, generator=g) * 255).round().to(torch.uint8)
    return TensorImageDataset(images, [0, 1, 0, 1], ["a", "b"], size)


def test_flip_cam_dataset_pairs_each_orientation_with_its_own_map():
    data = _images()
    cams = torch.arange(4 * 2 * 4, dtype=torch.float32).view(4, 2, 2, 2)
    ds = FlipCamDataset(data, cams)
    image, flip, cam, label = ds[(2, 1)]
    assert torch.equal(image, data[2][0].flip(-1)) and flip == 1 and label == 0
    assert torch.equal(cam, cams[2, 1])
    image0, _, cam0, _ = ds[(2, 0)]
    assert torch.equal(image0, data[2][0]) and torch.equal(cam0, cams[2, 0])


@pytest.mark.parametrize("world", [1, 2])
def test_streaming_source_equals_the_cached_source_of_the_same_images(world):
    # With an identity trunk, streamed batches must be the cached features' batches:
    # same order, same flips, each image with the map of its own orientation.
    data = _images()
    x = torch.stack([data[i][0] for i in range(4)])
    feats = torch.stack([x, x.flip(-1)], dim=1)  # float32 "cache" of the images
    labels = torch.tensor(data.labels)
    cams = torch.rand(4, 2, 2, 2, generator=torch.Generator().manual_seed(5))
    for rank in range(world):
        cached = CachedSource(feats, labels, cams, rank=rank, world=world)
        streamed = StreamingSource(data, nn.Identity(), cams, rank=rank, world=world)
        for (a, wa), (b, wb) in zip(cached.train_batches(3, torch.Generator().manual_seed(9), True),
                                    streamed.train_batches(3, torch.Generator().manual_seed(9), True), strict=True):
            assert wa == wb and torch.equal(a.index, b.index) and torch.equal(a.flip, b.flip)
            assert torch.equal(a.x, b.x) and torch.equal(a.cam, b.cam) and torch.equal(a.y, b.y)
        for a, b in zip(cached.ordered_batches(3, (0, 1)), streamed.ordered_batches(3, (0, 1)), strict=True):
            assert torch.equal(a.x, b.x) and torch.equal(a.index, b.index)


def test_epoch_plan_draws_like_iterate_batches():
    order, flips = epoch_plan(6, torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(2)
    assert torch.equal(order, torch.randperm(6, generator=g))
    assert torch.equal(flips, torch.randint(0, 2, (6,), generator=g))


def test_gradcam_at_layer_resolution_keeps_the_feature_grid():
    # images 8x8 -> a stride-2 conv -> 4x4: the cached maps are 4x4, not resized to 8x8
    tail = nn.Sequential(nn.Conv2d(3, 2, 3, stride=2, padding=1), nn.ReLU())
    model = BaseModel(tail, 2, 2).eval()
    data = _images()
    source = StreamingSource(data, nn.Identity())
    small = gradcam_maps(model, source, None, progress=False, at_layer_resolution=True)
    full = gradcam_maps(model, source, None, progress=False)
    assert small.shape == (4, 2, 4, 4) and full.shape == (4, 2, 8, 8)
    assert float(small.max()) <= 1.0 + 1e-6 and float(small.min()) >= 0.0


def test_use_streaming():
    run = RunConfig()
    assert not use_streaming(run)
    assert use_streaming(replace(run, backbone={"tail": "all"}))
    assert not use_streaming(replace(run, backbone={"tail": "all"}, streaming="off"))
    assert use_streaming(replace(run, streaming="on"))
    with pytest.raises(ValueError, match="streaming must be"):
        use_streaming(replace(run, streaming="yes"))


def test_no_cuda_calls_in_lvwlib():
    root = Path(__file__).resolve().parents[2]
    found = subprocess.run(["grep", "-rn", r"\.cuda()", str(root / "lvwlib")], capture_output=True, text=True)
    assert found.stdout == "", found.stdout
