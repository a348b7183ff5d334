"""Unit tests of the ProtoPShare baseline: merge planning, merging, descriptors, push, a tiny run."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from lvwlib.core.config import LVWConfig
from lvwlib.core.model import PrototypeNet
from lvwlib.core.push import push_words
from lvwlib.methods.protopshare import (
    ProtoPShareConfig,
    apply_merges,
    merge_step,
    min_distance_descriptors,
    pairwise_descriptor_distances,
    plan_merges,
    protopshare,
)

INF = float("inf")


def tiny_net(words_per_class: int = 2, seed: int = 0) -> PrototypeNet:
    """Tail nn.Identity, Ct = Cf = 3, 2 classes, D = 3."""
    return PrototypeNet(nn.Identity(), 3, num_classes=2, words_per_class=words_per_class,
                        feature_dim=3, seed=seed)


def symmetric(upper: dict[tuple[int, int], float], m: int) -> torch.Tensor:
    dist = torch.full((m, m), INF)
    for (i, j), v in upper.items():
        dist[i, j] = dist[j, i] = v
    return dist


# ----------------------------------------------------------------------------- planning


def test_plan_merges_closest_disjoint_pairs():
    # Sorted pairs: (1,4)=0.5, (0,1)=1, (2,3)=2, (0,2)=3, then the 9s.
    # (0,1) is skipped because 1 is already merged with 4 in this step.
    d = symmetric({(0, 1): 1.0, (0, 2): 3.0, (0, 3): 9.0, (0, 4): 9.0,
                   (1, 2): 9.0, (1, 3): 9.0, (1, 4): 0.5,
                   (2, 3): 2.0, (2, 4): 9.0, (3, 4): 9.0}, 5)
    assert plan_merges(d, 1) == [(1, 4)]
    assert plan_merges(d, 2) == [(1, 4), (2, 3)]
    # Only 0 is left unpaired: asking for 3 merges gives the 2 possible ones.
    assert plan_merges(d, 3) == [(1, 4), (2, 3)]
    assert plan_merges(d, 0) == []


def test_plan_merges_ties_prefer_lower_indices_and_keep_lower():
    # All off-diagonal distances equal: (0,1) then (2,3); the lower index is kept.
    d = symmetric({(i, j): 1.0 for i in range(4) for j in range(i + 1, 4)}, 4)
    assert plan_merges(d, 2) == [(0, 1), (2, 3)]
    # The kept index is the lower one even when the matrix lists it second.
    d = symmetric({(0, 1): 5.0, (0, 2): 5.0, (1, 2): 5.0, (0, 3): 0.1, (1, 3): 5.0, (2, 3): 5.0}, 4)
    assert plan_merges(d, 1) == [(0, 3)]


# ----------------------------------------------------------------------------- merging


def test_apply_merges_sums_columns_ors_classes_and_shrinks():
    net = tiny_net()  # words 0,1: class 0; words 2,3: class 1
    with torch.no_grad():
        net.last_layer.weight.copy_(torch.arange(8.0).view(2, 4))  # [C=2, M=4]
    old_w = net.last_layer.weight.detach().clone()
    old_words = net.words.detach().clone()

    kept = apply_merges(net, [(0, 2)])

    assert kept.tolist() == [0, 1, 3]
    assert net.num_words == 3
    assert net.words.shape == (3, 3) and isinstance(net.words, nn.Parameter)
    assert torch.equal(net.words.detach(), old_words[[0, 1, 3]])
    assert net.last_layer.weight.shape == (2, 3) and net.last_layer.in_features == 3
    assert torch.equal(net.last_layer.weight[:, 0], old_w[:, 0] + old_w[:, 2])
    assert torch.equal(net.last_layer.weight[:, 1:], old_w[:, [1, 3]])
    assert net.word_classes.tolist() == [[1.0, 1.0], [1.0, 0.0], [0.0, 1.0]]
    # The buffer, parameters and state_dict agree on the new size.
    state = net.state_dict()
    assert state["words"].shape == (3, 3)
    assert state["last_layer.weight"].shape == (2, 3)
    assert state["word_classes"].shape == (3, 2)
    assert "word_classes" in dict(net.named_buffers())
    clone = copy.deepcopy(net)
    clone.load_state_dict(state)
    # forward still works, and an optimiser built after the merge steps.
    out = net(torch.rand(4, 3, 2, 2))
    assert out.logits.shape == (4, 2)
    assert out.distances.shape == (4, 3, 2, 2)
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    out.logits.sum().backward()
    opt.step()


def test_merging_identical_words_keeps_logits():
    # Two words with the same vector have the same score, so summing their
    # last-layer columns into one of them leaves every logit unchanged.
    net = tiny_net()
    with torch.no_grad():
        net.words[3] = net.words[1]
    x = torch.rand(5, 3, 2, 2)
    before = net(x).logits
    merge_step(net, symmetric({(1, 3): 0.0, (0, 2): 1.0}, 4), n_merges=1)
    assert net.num_words == 3
    torch.testing.assert_close(net(x).logits, before)


def test_apply_merges_rejects_overlapping_or_out_of_range_plans():
    with pytest.raises(ValueError, match="disjoint"):
        apply_merges(tiny_net(), [(0, 1), (1, 2)])
    with pytest.raises(ValueError, match="outside"):
        apply_merges(tiny_net(), [(0, 7)])


# ----------------------------------------------------------------------------- descriptors


def test_min_distance_descriptors_brute_force():
    gen = torch.Generator().manual_seed(1)
    feats = torch.rand(5, 2, 3, 2, 3, generator=gen).half()
    net = tiny_net(seed=3)
    desc = min_distance_descriptors(net, feats, batch_size=2)
    assert desc.shape == (4, 5)  # [M, N]
    with torch.no_grad():
        latent = net.latent(feats[:, 0].float())  # [N, D, h, w], unflipped only
    expected = torch.empty(4, 5)
    for j in range(4):
        for n in range(5):
            patches = latent[n].flatten(1).T  # [hw, D]
            expected[j, n] = min(float(((p - net.words[j].detach()) ** 2).sum()) for p in patches)
    torch.testing.assert_close(desc, expected, atol=1e-5, rtol=1e-5)

    dist = pairwise_descriptor_distances(desc)
    assert dist.shape == (4, 4)
    assert torch.isinf(dist.diagonal()).all()
    for i in range(4):
        for j in range(4):
            if i != j:
                ref = float(((expected[i] - expected[j]) ** 2).sum().sqrt())
                assert dist[i, j].item() == pytest.approx(ref, abs=1e-5)


# ----------------------------------------------------------------------------- push


def test_push_after_merge_may_use_any_class_of_the_word():
    # Identity tail and add-on: the latent map is the trunk feature map itself.
    net = tiny_net()
    net.add_on = nn.Identity()
    feats = torch.zeros(2, 2, 3, 2, 2)
    feats[1, :, :, 0, 1] = 1.0  # image 1 (class 1) has a patch at (1, 1, 1)
    labels = torch.tensor([0, 1])
    with torch.no_grad():
        net.words[0] = torch.tensor([0.9, 0.9, 0.9])  # word 0, class 0: nearest patch is in image 1

    alone = copy.deepcopy(net)
    record = push_words(alone, feats, labels, class_specific=True, progress=False)
    assert int(record.image[0]) == 0  # class 0 only: it must stay on image 0
    assert torch.equal(alone.words[0].detach(), torch.zeros(3))

    apply_merges(net, [(0, 2)])  # word 0 absorbs word 2 (class 1): classes {0, 1}
    assert net.word_classes[0].tolist() == [1.0, 1.0]
    record = push_words(net, feats, labels, class_specific=True, progress=False)
    assert int(record.image[0]) == 1
    assert (int(record.row[0]), int(record.col[0])) == (0, 1)
    assert torch.equal(net.words[0].detach(), torch.ones(3))


# ----------------------------------------------------------------------------- end to end


def test_protopshare_end_to_end_counts():
    gen = torch.Generator().manual_seed(0)
    feats = torch.rand(12, 2, 3, 2, 2, generator=gen).half()
    labels = torch.arange(12) % 2
    net = tiny_net(words_per_class=4)  # M0 = 8
    lvw_cfg = LVWConfig(class_specific=True, separation=-0.08, beta_align=0.0, batch_size=4)
    cfg = ProtoPShareConfig(merge_fraction=0.25, steps=2, finetune_epochs=2, batch_size=4)
    out = protopshare(net, feats, labels, cfg, lvw_cfg, progress=False,
                      evaluate=lambda m: {"n": float(m.num_words)})

    assert net.num_words == 8  # the input model is untouched
    pruned = out["model"]
    assert out["words_before"] == 8 and out["words_after"] == 4 == pruned.num_words
    assert [row["merges"] for row in out["steps"]] == [2, 2]
    assert [(r["words_before"], r["words_after"]) for r in out["steps"]] == [(8, 6), (6, 4)]
    assert [r["n"] for r in out["steps"]] == [6.0, 4.0]
    assert "finetune_loss" in out["steps"][0]
    # every original word ends in exactly one final word
    assert sorted(j for group in out["origins"] for j in group) == list(range(8))
    assert len(out["origins"]) == 4
    # identities: the union of the merged words' classes; every class keeps a word
    for group, classes in zip(out["origins"], pruned.word_classes, strict=True):
        expected = torch.zeros(2)
        expected[torch.tensor(group) // 4] = 1.0
        assert torch.equal(classes, expected)
    assert (pruned.word_classes.sum(0) > 0).all()
    # each word was pushed onto an image of one of its classes
    assert len(out["push"]) == 4
    for j, row in enumerate(out["push"]):
        assert pruned.word_classes[j, labels[row["image"]]] == 1
    assert pruned(feats[:, 0].float()).logits.shape == (12, 2)


def test_protopshare_stops_when_nothing_is_left_to_merge():
    feats = torch.rand(6, 2, 3, 2, 2, generator=torch.Generator().manual_seed(2)).half()
    labels = torch.tensor([0, 1, 0, 1, 0, 1])
    cfg = ProtoPShareConfig(merge_fraction=0.5, steps=5, finetune_epochs=0, batch_size=4)
    out = protopshare(tiny_net(words_per_class=2), feats, labels, cfg,
                      LVWConfig(class_specific=True), progress=False)
    # 4 -> 2 (2 merges) -> 1 (only one pair left) -> stop
    assert [r["merges"] for r in out["steps"]] == [2, 1]
    assert out["words_after"] == 1
    assert out["model"].word_classes.tolist() == [[1.0, 1.0]]


def test_config_validation_and_default_schedule():
    cfg = ProtoPShareConfig()
    assert cfg.pruned_fraction == pytest.approx(0.8)
    with pytest.raises(ValueError):
        ProtoPShareConfig(merge_fraction=0.0)
    with pytest.raises(ValueError):
        ProtoPShareConfig(steps=-1)


@pytest.mark.parametrize("joint_epochs", [0, 2])
def test_latents_computed_once_give_the_same_floats_as_every_pass_computing_them(monkeypatch, joint_epochs):
    # a convolutional tail with batch norm (eval) and 70 images: the last batches are short
    # (70 = 64 + 6 for descriptors and push, one batch of 70 x 2 for the word scores). Without joint
    # epochs Z is computed once for the schedule; with them once per step, after the joint epochs.
    import lvwlib.methods.protopshare as ps

    torch.manual_seed(0)
    tail = nn.Sequential(nn.Conv2d(4, 6, 1), nn.BatchNorm2d(6), nn.ReLU())
    tail[1].running_mean.uniform_(-0.5, 0.5)
    net = PrototypeNet(tail, 6, num_classes=3, words_per_class=3, feature_dim=5, seed=1).eval()
    feats = torch.rand(70, 2, 4, 3, 3).half()
    labels = torch.arange(70) % 3
    cfg = ProtoPShareConfig(merge_fraction=0.2, steps=3, finetune_epochs=2, joint_epochs=joint_epochs)
    lvw_cfg = LVWConfig(words_per_class=3, feature_dim=5, class_specific=True, batch_size=16)
    once = protopshare(net, feats, labels, cfg, lvw_cfg, progress=False)
    monkeypatch.setattr(ps, "_latents", lambda *args: None)  # every pass through the tail, as before
    every = protopshare(net, feats, labels, cfg, lvw_cfg, progress=False)
    assert once["steps"] == every["steps"] and once["push"] == every["push"] and once["origins"] == every["origins"]
    a, b = once["model"].state_dict(), every["model"].state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert once["model"].tail is not net.tail and isinstance(once["model"].tail, nn.Sequential)  # restored
