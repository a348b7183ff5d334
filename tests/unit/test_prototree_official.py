"""ProtoTree's official-recipe options (issue 15 item 3): known answers on tiny hand-built trees,
and today's numbers at the default settings held on tiny data."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lvwlib.core.config import load_params
from lvwlib.experiment.calibrate import variant_params
from lvwlib.experiment.schema import check_params
from lvwlib.methods import registry
from lvwlib.methods.prototree.tree import (
    NEAR_UNIFORM_FACTOR,
    ProtoTree,
    ProtoTreeConfig,
    evaluate_strategies,
    make_add_on,
    train_prototree,
)
from lvwlib.store.paths import resolve

# A depth-2 tree (pre-order: nodes 0 root, 1 left, 2 right; leaves LL, LR, RL, RR), latent = trunk,
# D = 2, C = 3. Image A has patches (0, 0) and (10, 10): each distance is the prototype's norm, so
#   P(right) = 0.55 at the root, 0.1 at node 1, 0.6 at node 2
#   pi = LL .45 * .9 = .405, LR .45 * .1 = .045, RL .55 * .4 = .22, RR .55 * .6 = .33
# Leaves LL (.7, .2, .1), LR (.1, .1, .8), RL (.1, .1, .8), RR (.1, .5, .4):
#   soft = (.2835 + .0045 + .022 + .033, .081 + .0045 + .022 + .165, .0405 + .036 + .176 + .132)
#        = (.343, .2725, .3845)                    -> class 2
#   sample_max: LL (.405 is the largest pi)        -> class 0
#   greedy: root .55 > .5 right, node 2 .6 > .5 right: RR -> class 1
# Image B has patches (20, 20), (21, 21), far from every prototype: P(right) ~ 0, LL with pi ~ 1,
# so all three strategies predict class 0.
P_RIGHT = [0.55, 0.1, 0.6]
LEAVES = [[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.1, 0.1, 0.8], [0.1, 0.5, 0.4]]
SOFT_A = [0.343, 0.2725, 0.3845]


def hand_tree(depth: int, num_classes: int) -> ProtoTree:
    model = ProtoTree(nn.Identity(), 2, num_classes, depth=depth, feature_dim=2)
    model.add_on = nn.Identity()
    return model


def strategies_tree() -> ProtoTree:
    model = hand_tree(2, 3)
    with torch.no_grad():
        model.prototypes.copy_(torch.tensor([[-math.log(P_RIGHT[0]), 0.0], [0.0, -math.log(P_RIGHT[1])],
                                             [-math.log(P_RIGHT[2]), 0.0]]))
        model.leaf_logits.copy_(torch.tensor(LEAVES).log() + 3.0)
    return model.eval()


def feats(*images: list[tuple[float, float]]) -> torch.Tensor:
    """[N, 2, 2, 1, P] cached-feature layout (index 1, the flip, a copy) of images given as patches."""
    x = torch.stack([torch.tensor(p, dtype=torch.float32).T.reshape(2, 1, len(p)) for p in images])
    return torch.stack([x, x], dim=1)


IMAGE_A = [(0.0, 0.0), (10.0, 10.0)]
IMAGE_B = [(20.0, 20.0), (21.0, 21.0)]


def test_strategies_on_a_hand_built_depth2_tree():
    model = strategies_tree()
    x = feats(IMAGE_A, IMAGE_B)[:, 0]
    min_dist = model.nearest_distances(x)
    soft = model.strategy_log_probs(min_dist, "soft").exp()
    assert torch.allclose(soft[0], torch.tensor(SOFT_A), atol=1e-5)
    assert torch.allclose(soft[1], torch.tensor(LEAVES[0]), atol=1e-5)
    assert torch.allclose(model.strategy_log_probs(min_dist, "sample_max").exp(),
                          torch.tensor([LEAVES[0], LEAVES[0]]), atol=1e-6)
    assert torch.allclose(model.strategy_log_probs(min_dist, "greedy").exp(),
                          torch.tensor([LEAVES[3], LEAVES[0]]), atol=1e-6)
    assert model.predict(x, "soft").tolist() == [2, 0]
    assert model.predict(x, "sample_max").tolist() == [0, 0]
    assert model.predict(x, "greedy").tolist() == [1, 0]
    with pytest.raises(ValueError, match="greedy | soft | sample_max"):
        model.predict(x, "vote")
    # Labels (2, 0): soft gets both, the other two image B only; each agrees with soft on B only.
    # Near-uniform: max prob < 2 / 3; RR (.5) is, LL (.7) is not.
    got = evaluate_strategies(model, feats(IMAGE_A, IMAGE_B), torch.tensor([2, 0]))
    assert got == pytest.approx({
        "acc_soft": 1.0, "acc_sample_max": 0.5, "acc_greedy": 0.5,
        "fidelity_sample_max": 0.5, "fidelity_greedy": 0.5,
        "near_uniform_greedy": 0.5, "near_uniform_sample_max": 0.0,
        "mean_greedy_path_length": 2.0, "images": 2,
    })
    assert NEAR_UNIFORM_FACTOR == 2.0


def test_fidelity_is_one_when_the_tree_is_deterministic():
    # Image C holds the root's and node 2's prototypes exactly (P(right) ~ 1 at both): RR's path
    # probability is ~1 (node 1's, 0.09, weighs nothing), so soft, sample_max and greedy all take RR;
    # image B takes LL in all three.
    model = strategies_tree()
    protos = model.prototypes.detach()
    image_c = [tuple(protos[0].tolist()), tuple(protos[2].tolist())]
    data = feats(IMAGE_B, IMAGE_B, image_c)
    got = evaluate_strategies(model, data, torch.tensor([0, 1, 1]))
    assert got["fidelity_sample_max"] == 1.0 and got["fidelity_greedy"] == 1.0
    assert got["acc_soft"] == got["acc_greedy"] == got["acc_sample_max"] == pytest.approx(2 / 3)


def test_explain_headline_changes_the_prediction_not_the_maps():
    model = strategies_tree()
    x = feats(IMAGE_A, IMAGE_B)[:, 0]
    spec = registry.get("prototree")
    greedy_logits, greedy_maps, greedy_words = spec.explain(model, x, 10)
    model.headline = "soft"
    soft_logits, soft_maps, soft_words = spec.explain(model, x, 10)
    assert greedy_logits.argmax(1).tolist() == [1, 0] and soft_logits.argmax(1).tolist() == [2, 0]
    assert torch.equal(greedy_maps, soft_maps) and torch.equal(greedy_words, soft_words)
    assert greedy_words[0].tolist() == [0, 2]  # the greedy path: root, then node 2
    # The stored model remembers its headline and add-on.
    args = spec.build_args(model)
    assert args["headline"] == "soft" and args["add_on"] == "protopnet"
    rebuilt = spec.rebuild({k: v for k, v in args.items() if k not in ("headline", "add_on")}, nn.Identity(), 2, 3)
    assert rebuilt.headline == "greedy" and rebuilt.add_on_kind == "protopnet"  # models stored before the options


def _peaked(num_classes: int, cls: int) -> torch.Tensor:
    row = torch.zeros(num_classes)
    row[cls] = 20.0
    return row


def _depth3(low: set[int], c: int = 200) -> ProtoTree:
    """Depth 3 (nodes 0 root, 1 L, 2 LL, 3 LR, 4 R, 5 RL, 6 RR; leaves 0-7 left to right); the leaves in
    ``low`` uniform (max prob 1 / 200 <= 0.01), the others peaked."""
    model = hand_tree(3, c)
    with torch.no_grad():
        for leaf in range(8):
            model.leaf_logits[leaf] = torch.zeros(c) if leaf in low else _peaked(c, leaf)
    return model


@pytest.mark.parametrize("root_children", [True, False])
def test_prune_removes_low_leaves_and_their_subtrees(root_children):
    # A low subtree below the root's children: its node goes, its parent is replaced by the sibling.
    model = _depth3({2, 3})
    assert model.prune(0.01, root_children) == {"prototypes_before": 7, "leaves_before": 8,
                                                   "prototypes_after": 5, "leaves_after": 6}
    assert model.orig_node.tolist() == [0, 2, 4, 5, 6] and model.orig_leaf.tolist() == [0, 1, 4, 5, 6, 7]
    # A single low leaf: its parent (node 5) is replaced by the sibling leaf.
    model = _depth3({5})
    model.prune(0.01, root_children)
    assert model.orig_node.tolist() == [0, 1, 2, 3, 4, 6] and model.orig_leaf.tolist() == [0, 1, 2, 3, 4, 6, 7]
    # Two low subtrees at once (node 3's and leaf 6): both removed.
    model = _depth3({2, 3, 6})
    model.prune(0.01, root_children)
    assert model.orig_node.tolist() == [0, 2, 4, 5] and model.orig_leaf.tolist() == [0, 1, 4, 5, 7]


def test_prune_next_to_the_root_official_keeps_it():
    # The root's right subtree all low: ours replaces the root by its left child; the official code
    # never prunes a child of the root ("parent cannot be root"), so nothing goes.
    ours, official = _depth3({4, 5, 6, 7}), _depth3({4, 5, 6, 7})
    assert ours.prune(0.01)["prototypes_after"] == 3
    assert ours.orig_node.tolist() == [1, 2, 3] and ours.orig_leaf.tolist() == [0, 1, 2, 3]
    assert official.prune(0.01, root_children=False)["prototypes_after"] == 7
    assert official.orig_leaf.tolist() == list(range(8))
    # Below a kept root child, the official rule prunes as usual.
    official = _depth3({4, 5, 6, 7, 2, 3})
    official.prune(0.01, root_children=False)
    assert official.orig_node.tolist() == [0, 2, 4, 5, 6]


def test_prune_threshold_is_inclusive():
    # A uniform leaf with 100 classes has max prob 1 / 100, the threshold 0.01 itself (float32): pruned
    # (<=, as the official rule keeps only "max > threshold"); with 101 classes too, with 99 not.
    for c, pruned in ((100, True), (101, True), (99, False)):
        model = _depth3({0}, c)
        model.prune(0.01)
        assert (model.num_leaves == 7) == pruned, c


def test_official_add_on():
    torch.manual_seed(0)
    add_on = make_add_on(64, 256, "official")
    conv, act = add_on
    assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1) and conv.bias is None
    assert isinstance(act, nn.Sigmoid) and len(add_on) == 2
    # Xavier normal with the sigmoid's gain (1): std = sqrt(2 / (fan_in + fan_out)) = sqrt(2 / 320).
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / 320), rel=0.05)
    assert len(make_add_on(64, 128)) == 4  # the default stays ProtoPNet's
    with pytest.raises(ValueError, match="unknown add_on"):
        make_add_on(4, 4, "other")


def _tiny_data(n: int = 40, classes: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, 6, 4, 4, generator=g)
    labels = torch.arange(n) % classes
    x[:, :, :4] += 2.0 * torch.nn.functional.one_hot(labels, 4).float()[:, None, :, None, None]
    return x.to(torch.float16), labels


def _bn_tail() -> nn.Module:
    return nn.Sequential(nn.Conv2d(6, 8, 1), nn.BatchNorm2d(8), nn.ReLU())


def test_default_settings_keep_todays_numbers():
    # Computed with the code before the options and the training-step speed-up (commit ce043f0).
    torch.manual_seed(0)
    x, labels = _tiny_data()
    cfg = ProtoTreeConfig(depth=4, feature_dim=8, epochs=6, warm_epochs=1, batch_size=16, milestones=(4,),
                          lr_add_on=1e-2, lr_prototypes=1e-2)
    model = train_prototree(_bn_tail(), x, labels, 4, cfg, progress=False)
    losses = [h["loss"] for h in model.summary["history"]]
    assert losses == pytest.approx([1.4321916580200196, 1.4708237171173095, 1.3933434247970582,
                                    1.3833380460739135, 1.3965266466140747, 1.3879526615142823], rel=1e-6)
    assert model.prototypes.detach().double().sum().item() == pytest.approx(60.51955571770668, rel=1e-6)
    assert (model.leaf_logits.double() ** 2).sum().item() == pytest.approx(64.32398922066557, rel=1e-6)
    with torch.no_grad():
        log_probs, maps = model.explain(x[:, 0].float(), 3)
    assert log_probs.double().sum().item() == pytest.approx(-604.4879599660635, rel=1e-6)
    assert maps.double().sum().item() == pytest.approx(1351.5918444693089, rel=1e-6)


def test_nearest_distances_equal_min_distances():
    torch.manual_seed(0)
    model = ProtoTree(nn.Conv2d(4, 6, 1), 6, 3, depth=4, feature_dim=8)
    x = torch.randn(5, 4, 3, 3)
    assert torch.equal(model.nearest_distances(x), model.min_distances(x)[0])


def test_official_options_end_to_end():
    torch.manual_seed(0)
    x, labels = _tiny_data()
    tail = _bn_tail()
    cfg = ProtoTreeConfig(depth=3, feature_dim=8, epochs=1, warm_epochs=1, batch_size=16, add_on="official",
                          warm_bn_frozen=False, prune_root_children=False, headline="soft")
    model = train_prototree(tail, x, labels, 4, cfg, progress=False)
    # One frozen epoch: tail weights untouched, but (official freeze) its BN statistics moved.
    assert torch.equal(model.tail[0].weight, tail[0].weight)
    assert not torch.equal(model.tail[1].running_mean, tail[1].running_mean)
    assert model.headline == "soft" and model.add_on_kind == "official" and len(model.add_on) == 2
    got = evaluate_strategies(model, x, labels)
    assert got["acc_soft"] == pytest.approx((model.predict(x[:, 0].float(), "soft") == labels).float().mean().item())
    logits, _, _ = registry.get("prototree").explain(model, x[:, 0].float(), 2)
    assert torch.equal(logits.argmax(1), model.predict(x[:, 0].float(), "soft"))
    # The default freeze keeps the statistics.
    frozen = train_prototree(tail, x, labels, 4, ProtoTreeConfig(depth=3, feature_dim=8, epochs=1, warm_epochs=1,
                                                                 batch_size=16), progress=False)
    assert torch.equal(frozen.tail[1].running_mean, tail[1].running_mean)


def test_calibration_variants_are_valid_params():
    base = load_params(resolve("params/default.yaml"))
    spec = load_params(resolve("params/calibration_prototree.yaml"))
    assert spec["methods"] == ["prototree"] and {"defaults", "official", "official_15ep"} <= set(spec["variants"])
    for name, overrides in spec["variants"].items():
        check_params(variant_params(base, overrides), name)
    assert spec["variants"]["official"]["prototree"]["headline"] == "soft"


def test_prototree_table_from_result_rows(tmp_path):
    from lvwlib.paper.table1 import PROTOTREE_MEASURES, prototree_rows, write_prototree_table

    def row(seed: int, acc: float) -> dict:
        measures = dict.fromkeys(PROTOTREE_MEASURES, 0.5) | {"acc_soft": acc}
        return {"method": "prototree", "seed": seed, "headline": "soft", "strategies": {"test": measures},
                "summary": {"prototypes_before": 1023, "prototypes_after": 1023, "leaves_before": 1024,
                            "leaves_after": 1024}}

    rows = {"imagenette": [row(0, 0.7), row(1, 0.8), {"method": "lvw", "seed": 0}],
            "old": [{"method": "prototree", "seed": 0, "summary": {}}]}  # a result from before: skipped
    tree = prototree_rows(rows)
    assert list(tree["seed"]) == [0, 1] and set(tree["dataset"]) == {"imagenette"}
    summary = write_prototree_table(tree, tmp_path)
    assert summary.loc[("imagenette", "soft"), "acc_soft mean"] == pytest.approx(0.75)
    assert summary.loc[("imagenette", "soft"), "leaves_after mean"] == 1024
    md = (tmp_path / "prototree_table.md").read_text()
    assert md.startswith("# ProtoTree") and "| imagenette | soft       | 2       | 0.750 ± 0.071 |" in md
    assert (tmp_path / "prototree_table.csv").exists()
