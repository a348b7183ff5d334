"""ProtoTree baseline: known answers on tiny hand-set trees, pruning, projection, end-to-end."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lvwlib.methods.prototree.tree import ProtoTree, ProtoTreeConfig, log1mexp, train_prototree

# Numbering (pre-order) of a depth-2 tree:
#   internal nodes: 0 = root, 1 = its left child, 2 = its right child
#   leaves:         0 = LL, 1 = LR (below node 1), 2 = RL, 3 = RR (below node 2)
# Latent = trunk (identity tail and add-on), D = 2. Image patches on a 1 x 2 map:
#   (0, 0) and (10, 10); the second is far from every prototype, so the min over
#   patches is the distance to (0, 0), i.e. the prototype's norm.
#   p0 = (ln 1.25, 0) -> d = ln 1.25 -> P(right) = 0.8
#   p1 = (0, ln 4)    -> d = ln 4    -> P(right) = 0.25
#   p2 = (ln 2, 0)    -> d = ln 2    -> P(right) = 0.5
#   pi(LL) = 0.2 * 0.75 = 0.15   pi(LR) = 0.2 * 0.25 = 0.05
#   pi(RL) = 0.8 * 0.5  = 0.40   pi(RR) = 0.8 * 0.5  = 0.40        (sum 1)
# Leaf distributions (C = 2): LL (0.9, 0.1), LR (0.2, 0.8), RL (0.5, 0.5), RR (0.3, 0.7)
#   y_hat[0] = .15*.9 + .05*.2 + .40*.5 + .40*.3 = .135 + .010 + .200 + .120 = 0.465
#   y_hat[1] = 1 - 0.465 = 0.535
PROTOS = [[math.log(1.25), 0.0], [0.0, math.log(4.0)], [math.log(2.0), 0.0]]
LEAVES = [[0.9, 0.1], [0.2, 0.8], [0.5, 0.5], [0.3, 0.7]]
SHIFT = 3.0  # leaf logits = log p + 3: same softmax, all positive (relu in the update stays idle)


def hand_tree(depth: int, num_classes: int, log_probabilities: bool = True) -> ProtoTree:
    """Tree whose latent map is the trunk itself (D = 2)."""
    model = ProtoTree(nn.Identity(), 2, num_classes, depth=depth, feature_dim=2,
                      log_probabilities=log_probabilities)
    model.add_on = nn.Identity()
    return model


def depth2_tree(log_probabilities: bool = True) -> ProtoTree:
    model = hand_tree(2, 2, log_probabilities)
    with torch.no_grad():
        model.prototypes.copy_(torch.tensor(PROTOS))
        model.leaf_logits.copy_(torch.tensor(LEAVES).log() + SHIFT)
    return model


def image(*patches: tuple[float, float]) -> torch.Tensor:
    """[1, 2, 1, P] trunk map with the given 2-d patches."""
    return torch.tensor(patches, dtype=torch.float32).T.reshape(1, 2, 1, len(patches))


def test_log1mexp_matches_direct_formula():
    x = torch.tensor([1e-6, 0.1, math.log(2.0), 1.0, 20.0], dtype=torch.float64)
    assert torch.allclose(log1mexp(x), torch.log(1 - torch.exp(-x)), rtol=1e-9)


def test_complete_tree_structure_in_preorder():
    model = hand_tree(2, 2)
    assert model.node_children.tolist() == [[1, 2], [-1, -2], [-3, -4]]
    assert model.num_prototypes == 3 and model.num_leaves == 4 and model.max_path_length == 2
    assert hand_tree(10, 3).num_prototypes == 1023


@pytest.mark.parametrize("log_probabilities", [True, False])
def test_known_answer_depth2(log_probabilities):
    model = depth2_tree(log_probabilities)
    x = image((0.0, 0.0), (10.0, 10.0))
    min_dist, dist = model.min_distances(x)
    assert dist.shape == (1, 3, 1, 2)
    assert torch.allclose(min_dist, torch.tensor([[math.log(1.25), math.log(4.0), math.log(2.0)]]), atol=1e-6)
    out, path = model.tree_output(min_dist)
    if log_probabilities:
        out, path = out.exp(), path.exp()
    assert torch.allclose(path, torch.tensor([[0.15, 0.05, 0.40, 0.40]]), atol=1e-6)
    assert torch.allclose(out, torch.tensor([[0.465, 0.535]]), atol=1e-6)
    assert torch.allclose(model(x), torch.tensor([[0.465, 0.535]]), atol=1e-6)
    assert torch.allclose(model.log_forward(x).exp(), torch.tensor([[0.465, 0.535]]), atol=1e-6)


@pytest.mark.parametrize("log_probabilities", [True, False])
def test_matches_recursive_reference(log_probabilities):
    # The reference code's recursion: node output = (1 - p) * left + p * right, with
    # nodes and leaves numbered in pre-order. Values and prototype gradients agree.
    torch.manual_seed(0)
    depth = 4
    model = ProtoTree(nn.Conv2d(4, 6, 1), 6, 3, depth=depth, feature_dim=8,
                      log_probabilities=log_probabilities)
    with torch.no_grad():
        model.leaf_logits.normal_()
    x = torch.randn(5, 4, 3, 3)
    out = model(x)
    (-out[:, 0].log().sum()).backward()
    grad = model.prototypes.grad.clone()
    model.zero_grad()
    min_dist, _ = model.min_distances(x)
    leaves = model.leaf_distributions()
    count = {"node": 0, "leaf": 0}

    def recurse(d: int) -> torch.Tensor:
        if d == depth:
            count["leaf"] += 1
            return leaves[count["leaf"] - 1][None].expand(x.shape[0], -1)
        n = count["node"]
        count["node"] += 1
        p = torch.exp(-min_dist[:, n])[:, None]
        left = recurse(d + 1)
        return (1 - p) * left + p * recurse(d + 1)

    ref = recurse(0)
    (-ref[:, 0].log().sum()).backward()
    assert torch.allclose(out, ref, atol=1e-6)
    assert torch.allclose(grad, model.prototypes.grad, atol=1e-5)


@pytest.mark.parametrize("log_probabilities", [True, False])
def test_leaf_update_rule(log_probabilities):
    # Batch: the same image twice, labels 0 and 1. Update of leaf l, class c: the
    # sample of label c contributes pi_l * sigma_l[c] / y_hat[c]:
    #   LL: (.15*.9/.465, .15*.1/.535) = (0.290323, 0.028037)
    #   LR: (.05*.2/.465, .05*.8/.535) = (0.021505, 0.074766)
    #   RL: (.40*.5/.465, .40*.5/.535) = (0.430108, 0.373832)
    #   RR: (.40*.3/.465, .40*.7/.535) = (0.258065, 0.523364)
    # Each column sums to 1 (each sample's unit of mass is shared among the leaves).
    # With epoch_start = current logits c and 4 batches per epoch:
    #   c_new = relu(c - c / 4) + update = 0.75 c + update   (c > 0 here).
    model = depth2_tree(log_probabilities)
    x = torch.cat([image((0.0, 0.0), (10.0, 10.0))] * 2)
    y = torch.tensor([0, 1])
    out, path = model.tree_output(model.min_distances(x)[0])
    c = model.leaf_logits.clone()
    update = model.update_leaves(path.detach(), out.detach(), y, epoch_start=c.clone(), num_batches=4)
    expected = torch.tensor([[0.290323, 0.028037], [0.021505, 0.074766],
                             [0.430108, 0.373832], [0.258065, 0.523364]])
    assert torch.allclose(update, expected, atol=1e-5)
    assert torch.allclose(update.sum(0), torch.ones(2), atol=1e-6)
    assert torch.allclose(model.leaf_logits, 0.75 * c + expected, atol=1e-5)
    # The relu: an epoch start larger than the current value clamps to 0 before adding.
    model.update_leaves(path.detach(), out.detach(), y, epoch_start=torch.full_like(c, 100.0), num_batches=1)
    assert torch.all(model.leaf_logits >= 0)


def test_greedy_paths_and_explain_shapes():
    model = depth2_tree()
    # Image A: (0, 0) -> root P(right) = 0.8 > .5: right to node 2; P(right) = 0.5 is
    # not > 0.5 (and d = sqrt(ln2^2 + 1e-14) > ln 2): left -> leaf RL (2), path [0, 2].
    # Image B: (5, 5) far from every prototype -> left, left -> leaf LL (0), path [0, 1].
    x = torch.cat([image((0.0, 0.0), (10.0, 10.0)), image((5.0, 5.0), (6.0, 6.0))])
    leaf, path, length = model.greedy_paths(model.min_distances(x)[0])
    assert leaf.tolist() == [2, 0]
    assert path.tolist() == [[0, 2], [0, 1]]
    assert length.tolist() == [2, 2]
    assert model.predict(x).tolist() == [0, 0]  # RL (0.5, 0.5) ties -> 0; LL (0.9, 0.1) -> 0
    log_probs, maps = model.explain(x, m=10)
    assert log_probs.shape == (2, 2) and maps.shape == (2, 2, 1, 2)
    assert torch.allclose(log_probs.exp(), torch.tensor([LEAVES[2], LEAVES[0]]), atol=1e-6)
    dist = model.min_distances(x)[1]
    assert torch.allclose(maps[0], torch.exp(-dist[0, [0, 2]]))
    assert torch.allclose(maps[1], torch.exp(-dist[1, [0, 1]]))
    # m caps L, keeping the most similar path prototypes (image A: root 0.8 > node 2 0.5).
    _, top1 = model.explain(x, m=1)
    assert top1.shape == (2, 1, 1, 2)
    assert torch.allclose(top1[0, 0], maps[0, 0])
    # Soft and sample-max inference.
    assert model.predict(x, "soft").shape == (2,)
    assert model.predict(x, "sample_max").tolist() == [0, 0]


def _peaked(num_classes: int, cls: int) -> torch.Tensor:
    row = torch.zeros(num_classes)
    row[cls] = 20.0
    return row


def test_pruning_removes_low_subtree_and_keeps_routing():
    # Depth 3, pre-order: nodes 0 root, 1 L, 2 LL, 3 LR, 4 R, 5 RL, 6 RR;
    # leaves 0..7 = LLL LLR LRL LRR RLL RLR RRL RRR. C = 200: a uniform leaf has
    # max prob 0.005 <= tau = 0.01. Leaves 2, 3 (all of node 3's) uniform, others peaked.
    # Rule: node 3 removed, its parent (node 1) replaced by its sibling (node 2).
    # Left: nodes [0, 2, 4, 5, 6], leaves [0, 1, 4, 5, 6, 7].
    c = 200
    model = hand_tree(3, c)
    with torch.no_grad():
        model.prototypes.copy_(torch.rand(7, 2))
        for leaf in range(8):
            model.leaf_logits[leaf] = torch.zeros(c) if leaf in (2, 3) else _peaked(c, leaf)
    old_protos = model.prototypes.detach().clone()
    info = model.prune(0.01)
    assert info == {"prototypes_before": 7, "leaves_before": 8, "prototypes_after": 5, "leaves_after": 6}
    assert model.orig_node.tolist() == [0, 2, 4, 5, 6]
    assert model.orig_leaf.tolist() == [0, 1, 4, 5, 6, 7]
    assert model.node_children.tolist() == [[1, 2], [-1, -2], [3, 4], [-3, -4], [-5, -6]]
    assert torch.equal(model.prototypes.detach(), old_protos[[0, 2, 4, 5, 6]])
    # Routing in the pruned tree: leaf LLL now has path (root left, old node 2 left).
    x = torch.rand(3, 2, 2, 2)
    min_dist, _ = model.min_distances(x)
    pr = torch.exp(-min_dist)  # columns: new node ids
    path = model.leaf_path_probs(min_dist).exp()
    assert torch.allclose(path[:, 0], (1 - pr[:, 0]) * (1 - pr[:, 1]), atol=1e-6)
    assert torch.allclose(path[:, 5], pr[:, 0] * pr[:, 2] * pr[:, 4], atol=1e-6)
    assert torch.allclose(path.sum(1), torch.ones(3), atol=1e-5)
    assert torch.allclose(model(x).sum(1), torch.ones(3), atol=1e-5)
    # Greedy paths now have 2 or 3 nodes; explain pads with the last node's map.
    leaf, gpath, length = model.greedy_paths(min_dist)
    _, maps = model.explain(x)
    assert maps.shape == (3, 3, 2, 2)
    for i in range(3):
        last = gpath[i, length[i] - 1]
        for k in range(length[i], 3):
            assert torch.equal(maps[i, k], maps[i, length[i] - 1])
        assert torch.allclose(maps[i, length[i] - 1], torch.exp(-model.min_distances(x)[1][i, last]))


def test_pruning_next_to_root_and_nothing_to_prune():
    c = 200
    # Depth 2, right subtree (leaves 2, 3) uniform: root replaced by node 1.
    model = hand_tree(2, c)
    with torch.no_grad():
        model.leaf_logits.copy_(torch.stack([_peaked(c, 0), _peaked(c, 1), torch.zeros(c), torch.zeros(c)]))
    model.prune(0.01)
    assert model.orig_node.tolist() == [1] and model.orig_leaf.tolist() == [0, 1]
    assert model.node_children.tolist() == [[-1, -2]]
    # A single low leaf: its parent is replaced by the sibling leaf.
    model = hand_tree(2, c)
    with torch.no_grad():
        model.leaf_logits.copy_(torch.stack([torch.zeros(c), _peaked(c, 1), _peaked(c, 2), _peaked(c, 3)]))
    model.prune(0.01)
    assert model.orig_node.tolist() == [0, 2] and model.orig_leaf.tolist() == [1, 2, 3]
    assert model.node_children.tolist() == [[-1, 1], [-2, -3]]
    # Few classes: softmax max >= 1/C > tau, nothing pruned.
    model = hand_tree(3, 3)
    assert model.prune(0.01)["prototypes_after"] == 7


def _tiny_data(n: int = 12, classes: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(n, 2, 4, 3, 3, generator=g).to(torch.float16)
    labels = torch.arange(n) % classes
    return feats, labels


@pytest.mark.parametrize("constrained", [False, True])
def test_projection_onto_training_patches(constrained):
    torch.manual_seed(0)
    feats, labels = _tiny_data()
    model = ProtoTree(nn.Conv2d(4, 6, 1), 6, 3, depth=3, feature_dim=8).eval()
    with torch.no_grad():
        model.leaf_logits.copy_(torch.randn(8, 3) * 5)
    old = model.prototypes.detach().clone()
    allowed = model.subtree_classes()
    model.project(feats, labels, batch_size=64, class_constrained=constrained)
    with torch.no_grad():
        z = model.latent(feats[:, 0].float())  # [N, D, 3, 3], same single batch
    for n in range(model.num_prototypes):
        img, (r, c) = model.proj_image[n].item(), model.proj_pos[n].tolist()
        assert torch.equal(model.prototypes[n].detach(), z[img, :, r, c])
        # It is the nearest patch (over the allowed images) to the old prototype.
        d = (z - old[n][None, :, None, None]).pow(2).sum(1).sqrt()  # [N, 3, 3]
        if constrained:
            assert allowed[n, labels[img]]
            d = d[allowed[n, labels]]
        assert math.isclose(model.proj_dist[n].item(), d.min().item(), abs_tol=1e-5)


def test_state_dict_round_trip_after_pruning():
    c = 200
    model = hand_tree(2, c)
    with torch.no_grad():
        model.leaf_logits.copy_(torch.stack([_peaked(c, 0), _peaked(c, 1), torch.zeros(c), torch.zeros(c)]))
    model.prune(0.01)
    fresh = hand_tree(2, c)
    fresh.load_state_dict(model.state_dict())
    x = torch.rand(2, 2, 2, 2)
    assert fresh.num_prototypes == 1 and torch.allclose(fresh(x), model(x))


def test_end_to_end_tiny():
    torch.manual_seed(0)
    feats, labels = _tiny_data()
    tail = nn.Conv2d(4, 6, 1)
    before = tail.weight.detach().clone()
    cfg = ProtoTreeConfig(depth=3, feature_dim=8, epochs=2, warm_epochs=1, batch_size=5)
    model = train_prototree(tail, feats, labels, 3, cfg, progress=False)
    assert torch.equal(tail.weight, before)  # the caller's tail is untouched (deep copy)
    assert not torch.equal(model.tail.weight, before)  # trained after warm-up
    x = feats[:, 0].float()
    probs = model(x)
    assert probs.shape == (12, 3)
    assert torch.allclose(probs.sum(1), torch.ones(12), atol=1e-5)
    log_probs, maps = model.explain(x, m=10)
    assert log_probs.shape == (12, 3) and maps.shape == (12, 3, 3, 3)
    assert torch.allclose(log_probs.exp().sum(1), torch.ones(12), atol=1e-5)
    assert torch.equal(log_probs.argmax(1), model.predict(x))
    s = model.summary
    assert s["prototypes_before"] == 7 and s["prototypes_after"] == 7 and s["leaves_after"] == 8
    assert s["depth"] == 3 and len(s["history"]) == 2
    assert (model.proj_image >= 0).all()
    # Seeded: a second run gives the same tree.
    again = train_prototree(tail, feats, labels, 3, cfg, progress=False)
    assert torch.equal(again.prototypes, model.prototypes)
