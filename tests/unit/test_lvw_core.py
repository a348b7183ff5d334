"""Known-answer tests of the LVW similarity, losses, push and training protocol."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lvwlib.core.config import LVWConfig
from lvwlib.core.losses import (
    alignment_loss,
    cluster_loss,
    l1_last_layer,
    separation_loss,
)
from lvwlib.core.maps import combined_word_map
from lvwlib.core.model import PrototypeNet, class_identity, log_similarity, squared_distances
from lvwlib.core.push import push_words
from lvwlib.core.train import joint_lr, push_due, train_prototype_net


def test_squared_distances_by_hand():
    # One image, D = 2, a 1 x 2 patch grid: patches (0, 0) and (1, 2).
    latent = torch.tensor([[[[0.0, 1.0]], [[0.0, 2.0]]]])  # [1, 2, 1, 2]
    words = torch.tensor([[1.0, 0.0], [1.0, 2.0]])  # [2, 2]
    d = squared_distances(latent, words)
    # word 0: |(0,0)-(1,0)|^2 = 1, |(1,2)-(1,0)|^2 = 4; word 1: 1 + 4 = 5, 0.
    assert torch.allclose(d[0, :, 0], torch.tensor([[1.0, 4.0], [5.0, 0.0]]))


def test_squared_distances_never_negative():
    z = torch.full((1, 3, 2, 2), 0.3)
    d = squared_distances(z, torch.full((1, 3), 0.3))
    assert (d >= 0).all() and d.max() < 1e-6


def test_log_similarity_values():
    d = torch.tensor([0.0, 1.0])
    expected = torch.tensor([math.log(1 / 1e-4), math.log(2 / 1.0001)])
    assert torch.allclose(log_similarity(d), expected)


def test_class_identity_and_last_layer_init():
    identity = class_identity(4, 2, 2)
    assert identity.tolist() == [[1, 0], [1, 0], [0, 1], [0, 1]]
    net = PrototypeNet(nn.Identity(), 3, num_classes=2, words_per_class=2, feature_dim=4)
    assert net.last_layer.weight.tolist() == [[1, 1, -0.5, -0.5], [-0.5, -0.5, 1, 1]]
    assert net.words.min() >= 0 and net.words.max() < 1


def test_cluster_loss_all_words_and_class_specific():
    min_d = torch.tensor([[4.0, 1.0, 9.0], [2.0, 8.0, 3.0]])
    # LVW: min over all words: (1 + 2) / 2
    assert cluster_loss(min_d).item() == pytest.approx(1.5)
    # words 0,1 -> class 0; word 2 -> class 1; image 0 class 1, image 1 class 0
    wc = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([1, 0])
    assert cluster_loss(min_d, wc, y).item() == pytest.approx((9.0 + 2.0) / 2)
    # separation: min over the other classes' words: image 0 -> min(4, 1); image 1 -> 3
    assert separation_loss(min_d, wc, y).item() == pytest.approx((1.0 + 3.0) / 2)


def test_l1_last_layer_with_and_without_mask():
    w = torch.tensor([[1.0, -2.0], [0.5, 3.0]])
    assert l1_last_layer(w).item() == pytest.approx(6.5)
    mask = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    assert l1_last_layer(w, mask).item() == pytest.approx(2.5)


def test_combined_word_map_max_then_normalise():
    maps = torch.tensor([[[[1.0, 2.0]], [[3.0, 0.5]]]])  # [1, 2, 1, 2]
    # size 2 upsampling of a 1x2 map keeps columns; max -> [3, 2]; / max -> [1, 2/3]
    out = combined_word_map(maps, size=2, normalise="max")
    assert torch.allclose(out[0, 0], torch.tensor([1.0, 2 / 3]))
    out = combined_word_map(maps, size=2, normalise="minmax")
    assert torch.allclose(out[0, 1], torch.tensor([1.0, 0.0]), atol=1e-6)


def test_alignment_loss_known_answer():
    # 3 words on a 1x2 grid; k = 2 picks words 0 and 2 (highest scores).
    sim = torch.tensor([[[[4.0, 2.0]], [[9.0, 9.0]], [[1.0, 4.0]]]])  # [1, 3, 1, 2]
    scores = torch.tensor([[4.0, 0.0, 4.5]])
    cam = torch.tensor([[[0.0, 1.0]]])  # [1, 1, 2]
    # A^k = max([4, 2], [1, 4]) = [4, 4] -> / max = [1, 1]; cam min-max = [0, 1]
    # MSE over a 2x2 upsampled grid: columns (1-0)^2 and (1-1)^2 -> 0.5
    loss = alignment_loss(sim, scores, cam, k=2, size=2)
    assert loss.item() == pytest.approx(0.5, abs=1e-5)


def test_alignment_is_zero_when_maps_match():
    sim = torch.tensor([[[[1.0, 3.0]]]])
    cam = torch.tensor([[[0.0, 1.0]]])
    # max-normalised [1/3, 1] vs [0, 1]: nonzero; with minmax it matches exactly
    assert alignment_loss(sim, torch.ones(1, 1), cam, k=1, size=2).item() > 0
    assert alignment_loss(sim, torch.ones(1, 1), cam, k=1, size=2, normalise="minmax").item() < 1e-10


def _tiny_net(classes=2, wpc=2, seed=0):
    torch.manual_seed(seed)
    tail = nn.Sequential(nn.Conv2d(3, 5, 1), nn.ReLU())
    return PrototypeNet(tail, 5, num_classes=classes, words_per_class=wpc, feature_dim=4, seed=seed)


def test_push_makes_words_equal_training_patches():
    net = _tiny_net()
    feats = torch.randn(6, 2, 3, 2, 2).half()
    labels = torch.tensor([0, 1, 0, 1, 0, 1])
    record = push_words(net, feats, labels, progress=False)
    with torch.no_grad():
        latent = net.latent(feats[:, 0].float())
    for j in range(net.num_words):
        patch = latent[record.image[j], :, record.row[j], record.col[j]]
        assert torch.equal(net.words[j], patch)
        # and it is the nearest patch over the whole set
        all_d = ((latent - patch[None, :, None, None]) ** 2).sum(1)
        assert all_d.min() == 0


def test_patch_distances_by_hand():
    from lvwlib.core.push import patch_distances

    latent = torch.tensor([[[[0.0, 3.0]], [[0.0, 4.0]]]])  # [1, D=2, 1, 2]: patches (0, 0) and (3, 4)
    words = torch.tensor([[0.0, 0.0], [3.0, 0.0]])  # [M=2, D]
    assert torch.equal(patch_distances(latent, words), torch.tensor([[[0.0, 5.0], [3.0, 4.0]]]))


def test_push_takes_each_words_nearest_patch_and_records_its_squared_distance():
    net = _tiny_net()
    feats = torch.randn(6, 2, 3, 2, 2).half()
    labels = torch.tensor([0, 1, 0, 1, 0, 1])
    with torch.no_grad():
        latent = net.latent(feats[:, 0].float())  # [6, D, 2, 2]
        before = net.words.detach().clone()
    record = push_words(net, feats, labels, progress=False, batch_size=4)  # two batches: the running minimum
    squared = ((latent[:, None] - before[None, :, :, None, None]) ** 2).sum(2).flatten(2)  # [6, M, 4]
    best = squared.permute(1, 0, 2).flatten(1).min(1)  # per word over (image, position)
    assert torch.equal(record.image * 4 + record.row * 2 + record.col, best.indices)
    torch.testing.assert_close(record.distance, best.values, rtol=1e-5, atol=1e-6)


def test_class_specific_push_uses_own_class_only():
    net = _tiny_net()
    feats = torch.randn(6, 2, 3, 2, 2).half()
    labels = torch.tensor([0, 1, 0, 1, 0, 1])
    record = push_words(net, feats, labels, class_specific=True, progress=False)
    owner = net.word_classes.argmax(1)
    assert torch.equal(labels[record.image], owner)


def test_gradients_reach_words_and_tail():
    net = _tiny_net()
    x = torch.randn(4, 3, 2, 2)
    out = net(x)
    loss = nn.functional.cross_entropy(out.logits, torch.tensor([0, 1, 0, 1])) + cluster_loss(out.min_distances)
    loss = loss + alignment_loss(log_similarity(out.distances), -out.min_distances, torch.rand(4, 2, 2), 2, 4)
    loss.backward()
    assert net.words.grad is not None and net.words.grad.abs().sum() > 0
    assert net.tail[0].weight.grad is not None and net.tail[0].weight.grad.abs().sum() > 0


def test_explain_returns_top_words_maps():
    net = _tiny_net()
    x = torch.randn(3, 3, 2, 2)
    logits, maps = net.explain(x, m=2)
    assert logits.shape == (3, 2) and maps.shape == (3, 2, 2, 2)
    scores = net.scores(x)
    top = scores.topk(1, dim=1).indices[:, 0]
    out = net(x)
    best_map = log_similarity(out.distances)[torch.arange(3), top]
    assert torch.allclose(maps[:, 0], best_map)


def test_lr_schedule_has_floor_and_push_schedule():
    cfg = LVWConfig(lr_decay_every=5, lr_decay=0.1, lr_floor=1e-6, joint_epochs=25, push_every=10)
    assert joint_lr(1e-4, 0, cfg) == 1e-4
    assert joint_lr(1e-4, 5, cfg) == pytest.approx(1e-5)
    assert joint_lr(1e-4, 30, cfg) == 1e-6
    assert [e for e in range(1, 26) if push_due(e, cfg)] == [10, 20, 25]


def _train_setup(tmp_path, **overrides):
    cfg = LVWConfig(
        words_per_class=2, feature_dim=4, warm_epochs=1, joint_epochs=2, push_every=1,
        last_layer_epochs=2, align_size=4, topk_align=2, batch_size=4, **overrides,
    )
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(8, 2, 3, 2, 2, generator=g).half()
    labels = torch.tensor([0, 1] * 4)
    cams = torch.rand(8, 2, 2, 2, generator=g)
    return cfg, feats, labels, cams


def test_training_runs_all_stages_and_resumes(tmp_path):
    cfg, feats, labels, cams = _train_setup(tmp_path)
    ckpt = tmp_path / "ckpt.pt"
    net = _tiny_net()
    state = train_prototype_net(net, feats, labels, cams, cfg, checkpoint=ckpt, progress=False)
    stages = [row["stage"] for row in state.history]
    assert stages == ["warm", "joint", "last_layer", "joint", "last_layer"]
    assert len(state.pushes) == 2 and "align" in state.history[1]
    # a finished checkpoint resumes to the same weights without training further
    net2 = _tiny_net(seed=1)
    state2 = train_prototype_net(net2, feats, labels, cams, cfg, checkpoint=ckpt, progress=False)
    assert len(state2.history) == len(state.history)
    assert torch.equal(net2.words, net.words)
    # after the final push every word is a training patch
    with torch.no_grad():
        latent = net.latent(feats[:, 0].float()).permute(0, 2, 3, 1).reshape(-1, 4)
    assert all(((latent - w).abs().sum(1) == 0).any() for w in net.words)


def test_checkpoint_of_other_config_is_refused(tmp_path):
    from lvwlib.store.cache import StaleCacheError

    cfg, feats, labels, cams = _train_setup(tmp_path)
    ckpt = tmp_path / "ckpt.pt"
    train_prototype_net(_tiny_net(), feats, labels, cams, cfg, checkpoint=ckpt, progress=False)
    other = LVWConfig(**{**cfg.__dict__, "alpha_cluster": 0.5})
    with pytest.raises(StaleCacheError, match="another config"):
        train_prototype_net(_tiny_net(), feats, labels, cams, other, checkpoint=ckpt, progress=False)


def test_alignment_requires_cams(tmp_path):
    cfg, feats, labels, _ = _train_setup(tmp_path)
    with pytest.raises(ValueError, match="Grad-CAM"):
        train_prototype_net(_tiny_net(), feats, labels, None, cfg, progress=False)
