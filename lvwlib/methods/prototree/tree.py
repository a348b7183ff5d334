"""ProtoTree baseline (Nauta, van Bree, Seifert, CVPR 2021) on cached trunk features.

A soft binary decision tree whose internal nodes each hold one 1 x 1 x D prototype
and whose leaves each hold a class distribution. For an image with latent map
``z = add_on(tail(trunk))`` [D, h, w], node n sends the image to its RIGHT child
("prototype present") with probability ``exp(-min_patch ||z - p_n||)`` (plain L2
distance, not squared) and to its LEFT child ("absent") with the rest. The soft
output is ``y_hat = sum_leaves pi_l(x) * softmax(c_l)``, where the path probability
``pi_l`` is the product of the routing probabilities along the leaf's path.

Training (as in the paper and its code, ``github.com/M-Nauta/ProtoTree``):

- tail, add-on and prototypes by gradient descent (Adam) on ``NLL(log y_hat)``;
  the tail is frozen for the first ``warm_epochs``;
- leaf parameters ``c_l`` by the derivative-free rule, after every optimiser step::

      c_l <- relu(c_l - c_l^(epoch start) / n_batches) + sum_{x, y in batch} y * pi_l(x) * softmax(c_l) / y_hat(x)

  (the product and division are element-wise over classes). Over one epoch the
  value the leaf had at the epoch's start is removed in ``n_batches`` equal steps
  while the batch updates accumulate: a running (smoothed) version of the
  full-data fixed-point update of Kontschieder et al.;
- after training: prune, then project (see :meth:`ProtoTree.prune`,
  :meth:`ProtoTree.project`).

The leaf rule is the official one (``prototree/train.py``, ``train_epoch``): the same
update, after ``optimizer.step()``, with the path probabilities and output of that
step's forward pass and the leaf values as they stand (the optimiser never touches
them); leaves start at zero logits (uniform). The official optimiser is AdamW with
weight decay 0 (its per-group "weight_decay_rate" keys are ignored by torch), i.e.
Adam, eps 1e-7, as here.

Inference is greedy by default (the LVW paper's deterministic tree): at each node go
right iff the routing probability is > 0.5, predict the argmax of the reached
leaf. The soft tree (``forward``; the official "distributed" headline) and "sample
max" (most probable leaf) are also available (:meth:`ProtoTree.strategy_log_probs`,
:func:`evaluate_strategies`: the three accuracies, fidelities and near-uniform leaves).

Options of the official recipe (:class:`ProtoTreeConfig`, defaults = the earlier
behaviour): the official add-on (``add_on``), BN statistics during the frozen epochs
(``warm_bn_frozen``), pruning next to the root (``prune_root_children``) and the
strategy of Table 1's accuracy (``headline``); epochs, milestones, gamma and the
learning rates were fields already.

Representation: internal nodes and leaves are numbered separately in depth-first
pre-order (root = node 0, leaves left to right). ``node_children[n] = (left, right)``
with ``v >= 0`` an internal node and ``v < 0`` the leaf ``-v - 1``. This stays valid
after pruning, when the tree is no longer complete; everything the forward pass
needs (every leaf's path: nodes, directions, padding mask) is derived from it.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from lvwlib.core.batches import inference_in_chunks, iterate_batches

_LN2 = math.log(2.0)


@dataclass(frozen=True)
class ProtoTreeConfig:
    depth: int = 10  # complete tree depth: 2^d - 1 prototypes, 2^d leaves; LVW Table 1: 10 (10 prototypes on a test path); ProtoTree code: 9
    feature_dim: int = 128  # D: add-on output channels = prototype length (LVW/ProtoPNet 128; ProtoTree code 256)
    epochs: int = 10  # total training epochs, warm-up included (paper: 100 on CUB; few on CPU)
    warm_epochs: int = 2  # first epochs with the backbone tail frozen (ProtoTree code: freeze_epochs = 2)
    lr_tail: float = 1e-4  # Adam lr of the backbone tail (as LVW; ProtoTree: 1e-5 net, 1e-3 last block)
    lr_add_on: float = 1e-3  # Adam lr of the add-on layers (ProtoTree code: lr_block = 1e-3)
    lr_prototypes: float = 1e-3  # Adam lr of the prototypes (ProtoTree code: lr = 1e-3)
    milestones: tuple[int, ...] = ()  # epochs at which all lrs are multiplied by lr_gamma (CUB: 60,70,80,90,100)
    lr_gamma: float = 0.5  # MultiStepLR factor (ProtoTree code default 0.5)
    adam_eps: float = 1e-7  # Adam epsilon (ProtoTree code: 1e-7)
    batch_size: int = 64  # images per step (ProtoTree code: 64)
    proto_init_mean: float = 0.5  # prototypes ~ N(mean, std) (ProtoTree code), near the sigmoid's range
    proto_init_std: float = 0.1  # std of the prototype initialisation
    pruning_threshold: float = 0.01  # tau: prune subtrees whose leaves all have max class prob <= tau
    class_constrained_projection: bool = True  # project onto images of classes predicted below the node (ProtoTree main script)
    log_probabilities: bool = True  # route and combine in log space (code flag); plain products underflow at depth 10
    seed: int = 0  # seed of initialisation, data order and flips
    # Options of the official recipe (issue 15; defaults = the earlier behaviour, docs/choices.md):
    # protopnet: Conv1x1(Cf, D), ReLU, Conv1x1(D, D), Sigmoid, Kaiming | official (ProtoTree util/net.py,
    # util/init.py): one Conv1x1(Cf, D, bias=False), Sigmoid, Xavier normal (gain of the sigmoid, 1)
    add_on: Literal["protopnet", "official"] = "protopnet"
    # Warm-up epochs: tail BN layers in eval mode (frozen statistics) | False: in train mode, as the official
    # freeze (requires_grad False only; tree.train() keeps BN updating its running statistics)
    warm_bn_frozen: bool = True
    # Pruning may replace the root by a child (ours) | False: never prune a child of the root (official prune.py)
    prune_root_children: bool = True
    # Table 1's accuracy (the logits of explain): greedy (the LVW paper: the deterministic path) | soft
    # (the official headline, "distributed") | sample_max (the most probable leaf). The maps are the greedy
    # path's prototypes in every case (the official local explanation, util/visualize_prediction.py).
    headline: Literal["greedy", "soft", "sample_max"] = "greedy"


ADD_ONS = ("protopnet", "official")
STRATEGIES = ("greedy", "soft", "sample_max")  # inference strategies (the official code's three)
# A leaf distribution is "near-uniform" when its largest class probability is below this many times
# 1/C (uniform: exactly 1/C; a one-hot leaf: 1); the share of images whose reached leaf is near-uniform.
NEAR_UNIFORM_FACTOR = 2.0


def make_add_on(in_channels: int, feature_dim: int, kind: str = "protopnet") -> nn.Sequential:
    """The add-on, [B, Cf, h, w] -> [B, D, h, w].

    ``protopnet`` (ProtoPNet/LVW): Conv1x1(Cf, D), ReLU, Conv1x1(D, D), Sigmoid, Kaiming
    normal (fan_out) weights and zero biases. ``official`` (ProtoTree's ``util/net.py`` and
    ``util/init.py``): Conv1x1(Cf, D, bias=False), Sigmoid, Xavier normal weights with the
    sigmoid's gain (1).
    """
    if kind == "official":
        add_on = nn.Sequential(nn.Conv2d(in_channels, feature_dim, 1, bias=False), nn.Sigmoid())
        nn.init.xavier_normal_(add_on[0].weight, gain=nn.init.calculate_gain("sigmoid"))
        return add_on
    if kind != "protopnet":
        raise ValueError(f"unknown add_on {kind!r}: {' | '.join(ADD_ONS)}")
    add_on = nn.Sequential(
        nn.Conv2d(in_channels, feature_dim, 1),
        nn.ReLU(),
        nn.Conv2d(feature_dim, feature_dim, 1),
        nn.Sigmoid(),
    )
    for mod in add_on:
        if isinstance(mod, nn.Conv2d):
            nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(mod.bias)
    return add_on


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(-x)) for x >= 0, accurate for small and large x (Maechler 2012).

    Used for the log probability of the LEFT child, log(1 - exp(-d)).
    """
    return torch.where(x < _LN2, torch.log(-torch.expm1(-x)), torch.log1p(-torch.exp(-x)))


def _complete_children(depth: int) -> torch.Tensor:
    """children [2^depth - 1, 2] of a complete tree, nodes and leaves in pre-order."""
    children: list[list[int]] = []
    leaf_count = 0

    def build(d: int) -> int:
        nonlocal leaf_count
        if d == depth:
            leaf_count += 1
            return -leaf_count  # leaf (leaf_count - 1) encoded as -(index) - 1
        node = len(children)
        children.append([0, 0])
        left = build(d + 1)
        right = build(d + 1)
        children[node] = [left, right]
        return node

    build(0)
    return torch.tensor(children, dtype=torch.long).reshape(-1, 2)


class ProtoTree(nn.Module):
    """Soft prototype tree on trunk features.

    Args:
        tail: trainable backbone tail, [B, Ct, h, w] -> [B, Cf, h, w] (used as given;
            :func:`train_prototree` passes a deep copy).
        tail_channels: Cf.
        num_classes: C.
        depth: depth of the initial complete tree (>= 1).
        feature_dim: D, channels of the latent map and length of each prototype.
        log_probabilities: compute routing, path probabilities and output in log space.
        add_on: ``protopnet`` or ``official`` (:func:`make_add_on`).
        headline: the inference strategy of Table 1's prediction (:data:`STRATEGIES`).

    Buffers/parameters (I internal nodes, L leaves, after pruning I = L - 1 still):
        prototypes [I, D] (parameter), leaf_logits [L, C] (buffer, the paper's c_l,
        updated without gradients), node_children [I, 2], orig_node [I] / orig_leaf [L]
        (ids in the unpruned tree), proj_image [I], proj_pos [I, 2], proj_dist [I]
        (projection source: training image index, (row, col), distance before
        projection; -1 / nan before projection).
    """

    def __init__(
        self,
        tail: nn.Module,
        tail_channels: int,
        num_classes: int,
        depth: int = 10,
        feature_dim: int = 128,
        log_probabilities: bool = True,
        add_on: str = "protopnet",
        headline: str = "greedy",
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        if headline not in STRATEGIES:
            raise ValueError(f"unknown headline {headline!r}: {' | '.join(STRATEGIES)}")
        self.headline = headline  # the strategy of Table 1's prediction (explain in lvwlib.methods.prototree.method)
        self.tail = tail
        self.add_on_kind = add_on
        self.add_on = make_add_on(tail_channels, feature_dim, add_on)
        self.num_classes = num_classes
        self.init_depth = depth
        self.feature_dim = feature_dim
        self.log_probabilities = log_probabilities
        children = _complete_children(depth)
        n_nodes, n_leaves = children.shape[0], children.shape[0] + 1
        self.prototypes = nn.Parameter(torch.empty(n_nodes, feature_dim).normal_(0.5, 0.1))
        # Zeros = uniform leaves, as the reference code for the derivative-free rule.
        self.register_buffer("leaf_logits", torch.zeros(n_leaves, num_classes))
        self.register_buffer("node_children", children)
        self.register_buffer("orig_node", torch.arange(n_nodes))
        self.register_buffer("orig_leaf", torch.arange(n_leaves))
        self.register_buffer("proj_image", torch.full((n_nodes,), -1, dtype=torch.long))
        self.register_buffer("proj_pos", torch.full((n_nodes, 2), -1, dtype=torch.long))
        self.register_buffer("proj_dist", torch.full((n_nodes,), float("nan")))
        self.summary: dict[str, Any] = {}
        self._rebuild_paths()

    # ------------------------------------------------------------------ structure
    def _rebuild_paths(self) -> None:
        """Derive every leaf's path from ``node_children``.

        path_nodes [L, P] internal node ids (0 where padded), path_right [L, P] bool
        (went right), path_mask [L, P] bool (real step), with P = longest path.
        """
        children = self.node_children.tolist()
        n_leaves = len(children) + 1
        paths: list[list[tuple[int, bool]]] = [[] for _ in range(n_leaves)]
        stack: list[tuple[int, list[tuple[int, bool]]]] = [(0, [])]
        while stack:
            node, prefix = stack.pop()
            for right, child in ((False, children[node][0]), (True, children[node][1])):
                step = [*prefix, (node, right)]
                if child < 0:
                    paths[-child - 1] = step
                else:
                    stack.append((child, step))
        longest = max(len(p) for p in paths)
        nodes = torch.zeros(n_leaves, longest, dtype=torch.long)
        right = torch.zeros(n_leaves, longest, dtype=torch.bool)
        mask = torch.zeros(n_leaves, longest, dtype=torch.bool)
        for leaf, path in enumerate(paths):
            for k, (node, r) in enumerate(path):
                nodes[leaf, k], right[leaf, k], mask[leaf, k] = node, r, True
        dev = self.node_children.device
        # Derived, so not saved: rebuilt after loading a (possibly pruned) state dict.
        self.register_buffer("path_nodes", nodes.to(dev), persistent=False)
        self.register_buffer("path_right", right.to(dev), persistent=False)
        self.register_buffer("path_mask", mask.to(dev), persistent=False)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A pruned tree has fewer nodes: resize to the saved shapes before loading.
        for name in ("prototypes", "leaf_logits", "node_children", "orig_node", "orig_leaf",
                     "proj_image", "proj_pos", "proj_dist"):
            key = prefix + name
            if key in state_dict:
                current = getattr(self, name)
                if current.shape != state_dict[key].shape:
                    fresh = torch.empty(state_dict[key].shape, dtype=current.dtype, device=current.device)
                    if isinstance(current, nn.Parameter):
                        self.prototypes = nn.Parameter(fresh)
                    else:
                        setattr(self, name, fresh)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._rebuild_paths()

    @property
    def num_prototypes(self) -> int:
        """Number of internal nodes (= prototypes) currently in the tree."""
        return self.prototypes.shape[0]

    @property
    def num_leaves(self) -> int:
        return self.leaf_logits.shape[0]

    @property
    def max_path_length(self) -> int:
        """Longest root-to-leaf path, in internal nodes (= depth of the tree)."""
        return self.path_nodes.shape[1]

    def leaf_distributions(self) -> torch.Tensor:
        """[L, C] class distribution of every leaf, softmax(c_l)."""
        return torch.softmax(self.leaf_logits, dim=1)

    # ------------------------------------------------------------------ forward
    def latent(self, trunk: torch.Tensor) -> torch.Tensor:
        """[B, Ct, h, w] trunk features -> [B, D, h, w] latent map z (in CPU chunks outside training)."""
        return inference_in_chunks(lambda x: self.add_on(self.tail(x)), trunk, (self.tail, self.add_on))

    def distances(self, z: torch.Tensor) -> torch.Tensor:
        """[B, D, h, w] latent -> [B, I, h, w] L2 distances ||z - p_n|| of every patch.

        ||z||^2 - 2 z.p + ||p||^2 as one matmul, clamped at 0 (rounding), then a sqrt
        with a 1e-14 floor inside (as the reference) so the gradient stays finite.
        """
        b, d, h, w = z.shape
        return torch.sqrt(self._squared_distances(z) + 1e-14).view(b, -1, h, w)

    def _squared_distances(self, z: torch.Tensor) -> torch.Tensor:
        """[B, D, h, w] latent -> [B, I, hw] squared distances, clamped at 0."""
        flat = z.flatten(2)  # [B, D, hw]
        sq = (
            (flat * flat).sum(1, keepdim=True)
            - 2 * torch.einsum("bdk,nd->bnk", flat, self.prototypes)
            + (self.prototypes * self.prototypes).sum(1)[None, :, None]
        )
        return sq.clamp_min(0)

    def leaf_path_probs(self, min_dist: torch.Tensor) -> torch.Tensor:
        """[B, I] min distances -> [B, L] path probability of every leaf.

        Log probabilities (log pi_l) if ``log_probabilities``, else probabilities.
        log p_right = -d, log p_left = log(1 - exp(-d)).
        """
        nodes, right, mask = self.path_nodes, self.path_right, self.path_mask
        if self.log_probabilities:
            lr, ll = -min_dist, log1mexp(min_dist)
            steps = torch.where(right, lr[:, nodes], ll[:, nodes])  # [B, L, P]
            return torch.where(mask, steps, torch.zeros((), device=steps.device)).sum(-1)
        pr = torch.exp(-min_dist)
        steps = torch.where(right, pr[:, nodes], 1 - pr[:, nodes])
        return torch.where(mask, steps, torch.ones((), device=steps.device)).prod(-1)

    def tree_output(self, min_dist: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, I] min distances -> (output [B, C], leaf path probabilities [B, L]).

        Both in log space if ``log_probabilities`` (log y_hat = logsumexp_l
        (log pi_l + log softmax c_l)), else probabilities (y_hat = pi @ softmax(c)).
        """
        path = self.leaf_path_probs(min_dist)
        if self.log_probabilities:
            log_leaf = torch.log_softmax(self.leaf_logits, dim=1)  # [L, C]
            out = torch.logsumexp(path[:, :, None] + log_leaf[None], dim=1)
        else:
            out = path @ self.leaf_distributions()
        return out, path

    def min_distances(self, trunk: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, Ct, h, w] -> (min distances [B, I], distance maps [B, I, h, w])."""
        dist = self.distances(self.latent(trunk))
        return dist.flatten(2).amin(2), dist

    def nearest_distances(self, trunk: torch.Tensor) -> torch.Tensor:
        """[B, Ct, h, w] -> min distances [B, I], without the maps: the training step's.

        The min is taken over the squared distances and the 1e-14 and the sqrt are applied
        to [B, I] only. Both are monotone and correctly rounded, so the values equal
        :meth:`min_distances`' bit for bit, and so do the gradients unless two patches'
        distances tie after the sqrt but not before (then the gradient goes to the argmin
        instead of being shared). It skips a sqrt (and its backward) over [B, I, h*w]:
        a training step ~13 % faster on one CPU thread at depth 10, D = 128, B = 32 (issue 17;
        docs/choices.md).
        """
        return torch.sqrt(self._squared_distances(self.latent(trunk)).amin(2) + 1e-14)

    def log_forward(self, trunk: torch.Tensor) -> torch.Tensor:
        """[B, Ct, h, w] -> [B, C] log of the soft tree output, log y_hat."""
        out, _ = self.tree_output(self.min_distances(trunk)[0])
        return out if self.log_probabilities else torch.log(out)

    def forward(self, trunk: torch.Tensor) -> torch.Tensor:
        """[B, Ct, h, w] -> [B, C] soft class probabilities y_hat (rows sum to 1)."""
        out, _ = self.tree_output(self.min_distances(trunk)[0])
        return out.exp() if self.log_probabilities else out

    # ------------------------------------------------------------------ leaves
    @torch.no_grad()
    def update_leaves(
        self,
        path: torch.Tensor,
        out: torch.Tensor,
        labels: torch.Tensor,
        epoch_start: torch.Tensor,
        num_batches: int,
    ) -> torch.Tensor:
        """Derivative-free leaf update with the paper's smoothing over an epoch.

        Args:
            path: [B, L] leaf path probabilities from :meth:`tree_output` (log or not,
                as ``log_probabilities``), computed with the CURRENT leaf_logits.
            out: [B, C] tree output from the same call (log or not).
            labels: [B] long.
            epoch_start: [L, C] leaf_logits at the start of the epoch.
            num_batches: batches per epoch.

        Returns the batch update [L, C] (sum over the batch of
        y * pi_l * softmax(c_l) / y_hat); leaf_logits becomes
        relu(leaf_logits - epoch_start / num_batches) + update.
        """
        labels = labels.to(path.device)
        if self.log_probabilities:
            log_leaf = torch.log_softmax(self.leaf_logits, dim=1)  # [L, C]
            # Only the true class contributes (y is one-hot): term [B, L].
            term = (path + log_leaf[:, labels].T - out.gather(1, labels[:, None])).exp()
        else:
            leaf = self.leaf_distributions()
            term = path * leaf[:, labels].T / out.gather(1, labels[:, None])
        onehot = F.one_hot(labels, self.num_classes).to(term.dtype)  # [B, C]
        update = term.T @ onehot  # [L, C]
        # relu: the subtraction can leave tiny negatives (reference code does the same).
        self.leaf_logits.sub_(epoch_start / num_batches).relu_().add_(update)
        return update

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def greedy_paths(self, min_dist: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Deterministic routing: right iff exp(-d) > 0.5, i.e. d < ln 2.

        Args:
            min_dist: [B, I].
        Returns:
            leaf [B] reached leaf, path [B, P] internal nodes visited from the root
            (-1 after the end), length [B] number of nodes visited.
        """
        b = min_dist.shape[0]
        go_right = min_dist < _LN2  # [B, I]
        rows = torch.arange(b, device=min_dist.device)
        node = torch.zeros(b, dtype=torch.long, device=min_dist.device)
        path = torch.full((b, self.max_path_length), -1, dtype=torch.long, device=min_dist.device)
        leaf = torch.full((b,), -1, dtype=torch.long, device=min_dist.device)
        active = torch.ones(b, dtype=torch.bool, device=min_dist.device)
        for step in range(self.max_path_length):
            path[active, step] = node[active]
            child = self.node_children[node, go_right[rows, node].long()]
            reached = active & (child < 0)
            leaf[reached] = -child[reached] - 1
            active = active & (child >= 0)
            if not active.any():
                break
            node = torch.where(active, child, node)
        return leaf, path, (path >= 0).sum(1)

    @torch.no_grad()
    def strategy_log_probs(self, min_dist: torch.Tensor, strategy: str = "greedy") -> torch.Tensor:
        """[B, I] min distances -> [B, C] log class distribution of one inference strategy.

        The official code's three (``prototree/test.py``, ``ProtoTree.forward``): "greedy"
        (at each node right iff exp(-d) > 0.5; the reached leaf's distribution), "soft"
        (the official "distributed": log y_hat, every leaf weighted by its path
        probability) and "sample_max" (the leaf with the highest path probability).
        """
        if strategy == "greedy":
            leaf = self.greedy_paths(min_dist)[0]
        elif strategy == "soft":
            out = self.tree_output(min_dist)[0]
            return out if self.log_probabilities else torch.log(out)
        elif strategy == "sample_max":
            leaf = self.leaf_path_probs(min_dist).argmax(1)
        else:
            raise ValueError(f"unknown strategy {strategy!r}: {' | '.join(STRATEGIES)}")
        return torch.log_softmax(self.leaf_logits, dim=1)[leaf]

    @torch.no_grad()
    def predict(self, trunk: torch.Tensor, strategy: str = "greedy") -> torch.Tensor:
        """[B, Ct, h, w] -> [B] predicted class of ``strategy`` (:meth:`strategy_log_probs`)."""
        return self.strategy_log_probs(self.min_distances(trunk)[0], strategy).argmax(1)

    @torch.no_grad()
    def explain(
        self, trunk: torch.Tensor, m: int | None = None, strategy: str = "greedy"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A prediction and the similarity maps of the prototypes on the greedy path.

        Args:
            trunk: [B, Ct, h, w].
            m: None or >= the path length: all path prototypes; smaller: the m path
               prototypes with the highest similarity (max of the map), which are
               "the m most activated words" among those on the path.
            strategy: the prediction's (:meth:`strategy_log_probs`); the maps are the
               greedy path's whatever it is (the official local explanation).
        Returns:
            log_probs [B, C]: log class distribution of ``strategy``; greedy: the
                reached leaf's (argmax = greedy prediction).
            maps [B, L, h, w]: exp(-||z - p_n||) of the path's prototypes, root first,
                L = min(m, longest path); an image whose path is shorter (pruned tree)
                repeats its last node's map, so a max over the maps is unaffected.
        """
        min_dist, dist = self.min_distances(trunk)
        leaf, path, length = self.greedy_paths(min_dist)
        b = trunk.shape[0]
        rows = torch.arange(b, device=path.device)
        last = path[rows, length - 1]
        filled = torch.where(path >= 0, path, last[:, None])  # [B, P]
        maps = torch.exp(-dist[rows[:, None], filled])  # [B, P, h, w]
        if m is not None and m < maps.shape[1]:
            score = torch.where(path >= 0, maps.flatten(2).amax(2), torch.full_like(min_dist[:, :1], -1.0))
            top = score.topk(m, dim=1).indices.sort(dim=1).values  # keep root-first order
            maps = maps[rows[:, None], top]
        if strategy == "greedy":
            log_probs = torch.log_softmax(self.leaf_logits, dim=1)[leaf]
        else:
            log_probs = self.strategy_log_probs(min_dist, strategy)
        return log_probs, maps

    # ------------------------------------------------------------------ pruning
    @torch.no_grad()
    def prune(self, threshold: float, root_children: bool = True) -> dict[str, int]:
        """Remove subtrees whose leaves all have max class probability <= threshold.

        The paper's rule: such a node is removed and its parent is replaced by the
        node's sibling (one prototype fewer plus the subtree). A removed subtree's
        prototypes and leaves disappear. With ``root_children`` (ours), a child of the
        root can also be pruned (its sibling becomes the new root); without it, as the
        reference code (``prototree/prune.py``: "parent cannot be root"), the root keeps
        both children and a low child of the root keeps its whole subtree. If every leaf
        is below the threshold nothing is pruned. Note: softmax leaves with C classes
        have max probability >= 1/C, so tau = 0.01 prunes nothing when C < 100.

        Returns counts of prototypes and leaves before and after.
        """
        before = {"prototypes_before": self.num_prototypes, "leaves_before": self.num_leaves}
        low_leaf = (self.leaf_distributions().amax(1) <= threshold).tolist()
        children = self.node_children.tolist()
        low: dict[int, bool] = {}

        def all_low(v: int) -> bool:  # v in the children encoding
            if v < 0:
                return low_leaf[-v - 1]
            if v not in low:
                low[v] = all_low(children[v][0]) and all_low(children[v][1])
            return low[v]

        def rebuild(v: int) -> Any:  # nested ("leaf", id) / ("node", id, left, right)
            if v < 0:
                return ("leaf", -v - 1)
            left, right = children[v]
            if v == 0 and not root_children:
                return ("node", v, rebuild(left), rebuild(right))
            if all_low(left) and not all_low(right):
                return rebuild(right)  # parent v replaced by the sibling
            if all_low(right) and not all_low(left):
                return rebuild(left)
            return ("node", v, rebuild(left), rebuild(right))

        tree = rebuild(0)
        if tree[0] == "leaf":  # cannot happen: a root has one high and one low child at most
            raise RuntimeError("pruning left no internal node")
        self._set_structure(tree)
        return {**before, "prototypes_after": self.num_prototypes, "leaves_after": self.num_leaves}

    def _set_structure(self, tree: Any) -> None:
        """Renumber a nested tree in pre-order and keep only its nodes and leaves."""
        old_nodes: list[int] = []
        old_leaves: list[int] = []
        children: list[list[int]] = []

        def walk(t: Any) -> int:
            if t[0] == "leaf":
                old_leaves.append(t[1])
                return -len(old_leaves)
            idx = len(old_nodes)
            old_nodes.append(t[1])
            children.append([0, 0])
            left = walk(t[2])
            right = walk(t[3])
            children[idx] = [left, right]
            return idx

        walk(tree)
        dev = self.node_children.device
        keep_n = torch.tensor(old_nodes, dtype=torch.long, device=dev)
        keep_l = torch.tensor(old_leaves, dtype=torch.long, device=dev)
        self.prototypes = nn.Parameter(self.prototypes.detach()[keep_n].clone())
        self.leaf_logits = self.leaf_logits[keep_l].clone()
        self.orig_node = self.orig_node[keep_n].clone()
        self.orig_leaf = self.orig_leaf[keep_l].clone()
        self.proj_image = self.proj_image[keep_n].clone()
        self.proj_pos = self.proj_pos[keep_n].clone()
        self.proj_dist = self.proj_dist[keep_n].clone()
        self.node_children = torch.tensor(children, dtype=torch.long, device=dev).reshape(-1, 2)
        self._rebuild_paths()

    # ------------------------------------------------------------------ projection
    def subtree_classes(self) -> torch.Tensor:
        """[I, C] bool: class c is the argmax of some leaf below node n."""
        leaf_class = self.leaf_logits.argmax(1)  # [L]
        member = torch.zeros(self.num_prototypes, self.num_leaves, dtype=torch.bool, device=leaf_class.device)
        leaves = torch.arange(self.num_leaves, device=leaf_class.device)[:, None].expand_as(self.path_nodes)
        member[self.path_nodes[self.path_mask], leaves[self.path_mask]] = True
        onehot = F.one_hot(leaf_class, self.num_classes).to(torch.float32)
        return (member.to(torch.float32) @ onehot) > 0

    @torch.no_grad()
    def project(
        self,
        feats: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int = 64,
        class_constrained: bool = True,
        progress: bool = False,
    ) -> dict[str, Any]:
        """Replace each prototype by its nearest latent 1x1 patch of a training image.

        Args:
            feats: [N, 2, Ct, h, w] cached trunk features; only index 0 (unflipped)
                is used, so the source image is the one shown in visualisations.
            labels: [N].
            class_constrained: as the ProtoTree main script
                (``project_with_class_constraints``): node n is projected only onto
                images whose label is the argmax class of some leaf in n's subtree;
                if no training image qualifies, any image is used. It does NOT
                restrict to images routed through n (neither does the paper's code).

        Records proj_image [I] (index into feats), proj_pos [I, 2] (row, col) and
        proj_dist [I] (distance before projection). Call in eval mode (BN).
        Returns {"mean_distance": ..., "fallback_nodes": ...}.
        """
        dev = self.prototypes.device
        n_nodes = self.num_prototypes
        allowed = self.subtree_classes() if class_constrained else None  # [I, C]
        # Two running searches: over all images, and over the allowed ones (if any
        # constraint); the first is the fallback for nodes no image qualifies for.
        searches = [_NearestPatch(n_nodes, self.feature_dim, dev)]
        if allowed is not None:
            searches.append(_NearestPatch(n_nodes, self.feature_dim, dev))
        inf = torch.tensor(float("inf"), device=dev)
        batches = iterate_batches(feats, labels, batch_size, shuffle=False, random_flip=False, device=dev)
        for batch in tqdm(batches, total=math.ceil(feats.shape[0] / batch_size), desc="ProtoTree projection",
                          disable=not progress, leave=False):
            z = self.latent(batch.x)  # [B, D, h, w]
            dist = self.distances(z).flatten(2).transpose(0, 1)  # [I, B, hw]
            searches[0].update(dist, z, batch.index)
            if allowed is not None:
                ok = allowed[:, batch.y.to(dev)]  # [I, B]
                searches[1].update(torch.where(ok[:, :, None], dist, inf), z, batch.index)
        final = searches[-1]
        fallback = torch.isinf(final.dist)
        if fallback.any():
            final.take(searches[0], fallback)
        best, patch, src = final.dist, final.patch, final.src
        self.prototypes.data.copy_(patch)
        self.proj_image.copy_(src[:, 0])
        self.proj_pos.copy_(src[:, 1:])
        self.proj_dist.copy_(best)
        return {"mean_distance": best.mean().item(), "fallback_nodes": int(fallback.sum())}


class _NearestPatch:
    """Running nearest latent patch per prototype over batches (for projection)."""

    def __init__(self, n_nodes: int, dim: int, device: torch.device) -> None:
        self.dist = torch.full((n_nodes,), float("inf"), device=device)  # [I]
        self.patch = torch.zeros(n_nodes, dim, device=device)  # [I, D]
        self.src = torch.full((n_nodes, 3), -1, dtype=torch.long, device=device)  # image, row, col

    def update(self, dist: torch.Tensor, z: torch.Tensor, index: torch.Tensor) -> None:
        """dist [I, B, hw] (inf = not allowed), z [B, D, h, w], index [B] dataset positions."""
        n_nodes, b, hw = dist.shape
        w = z.shape[3]
        val, arg = dist.reshape(n_nodes, b * hw).min(1)  # [I]
        nodes = (val < self.dist).nonzero().squeeze(1)
        if nodes.numel() == 0:
            return
        img, pos = arg[nodes] // hw, arg[nodes] % hw
        self.dist[nodes] = val[nodes]
        self.patch[nodes] = z.flatten(2)[img, :, pos]
        self.src[nodes, 0] = index.to(img.device)[img]
        self.src[nodes, 1] = pos // w
        self.src[nodes, 2] = pos % w

    def take(self, other: _NearestPatch, nodes: torch.Tensor) -> None:
        """Copy ``other``'s results for the nodes in bool mask ``nodes``."""
        self.dist[nodes] = other.dist[nodes]
        self.patch[nodes] = other.patch[nodes]
        self.src[nodes] = other.src[nodes]


@torch.no_grad()
def evaluate_strategies(
    model: ProtoTree,
    feats: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """The official evaluation of a (pruned, projected) tree on one split (``prototree/test.py``).

    Args:
        feats: [N, 2, Ct, h, w] trunk features (the unflipped index 0 is used); labels [N].
    Returns:
        acc_soft, acc_sample_max, acc_greedy: accuracy of each strategy
            (:meth:`ProtoTree.strategy_log_probs`);
        fidelity_sample_max, fidelity_greedy: share of images on which that strategy
            predicts the soft tree's class (``eval_fidelity``);
        near_uniform_greedy, near_uniform_sample_max: share of images whose reached leaf
            has max class probability < NEAR_UNIFORM_FACTOR / C (2 / C);
        mean_greedy_path_length: prototypes met on the greedy path; images: N.
    """
    model.eval()
    leaf_max = model.leaf_distributions().amax(1)  # [L]
    near = leaf_max < NEAR_UNIFORM_FACTOR / model.num_classes  # [L]
    sums = dict.fromkeys(("acc_soft", "acc_sample_max", "acc_greedy", "fidelity_sample_max", "fidelity_greedy",
                          "near_uniform_greedy", "near_uniform_sample_max", "mean_greedy_path_length"), 0.0)
    leaf_class = model.leaf_logits.argmax(1)  # [L]
    for batch in iterate_batches(feats, labels, batch_size, shuffle=False, random_flip=False, device=device):
        min_dist = model.nearest_distances(batch.x)
        soft = model.tree_output(min_dist)[0].argmax(1)
        greedy_leaf, _, length = model.greedy_paths(min_dist)
        max_leaf = model.leaf_path_probs(min_dist).argmax(1)
        y = batch.y.to(soft.device)
        greedy, sample_max = leaf_class[greedy_leaf], leaf_class[max_leaf]
        for key, value in (("acc_soft", soft == y), ("acc_sample_max", sample_max == y), ("acc_greedy", greedy == y),
                           ("fidelity_sample_max", sample_max == soft), ("fidelity_greedy", greedy == soft),
                           ("near_uniform_greedy", near[greedy_leaf]), ("near_uniform_sample_max", near[max_leaf]),
                           ("mean_greedy_path_length", length)):
            sums[key] += value.float().sum().item()
    n = feats.shape[0]
    return {**{k: v / n for k, v in sums.items()}, "images": n}


def _tail_channels(tail: nn.Module, sample: torch.Tensor) -> int:
    """Cf from one forward pass in eval mode (BN statistics untouched)."""
    was_training = tail.training
    tail.eval()
    with torch.no_grad():
        cf = tail(sample).shape[1]
    tail.train(was_training)
    return cf


def train_prototree(
    tail: nn.Module,
    feats: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    cfg: ProtoTreeConfig | None = None,
    progress: bool = True,
    device: str | torch.device = "cpu",
    evaluate: Callable[[ProtoTree], dict[str, float]] | None = None,
    eval_every: int = 10,
) -> ProtoTree:
    """Train, prune and project a ProtoTree on cached trunk features.

    Args:
        tail: backbone tail [B, Ct, h, w] -> [B, Cf, h, w]; deep-copied.
        feats: [N, 2, Ct, h, w] trunk features (index 1 = horizontal flip).
        labels: [N] long.
        num_classes: C.
        cfg: :class:`ProtoTreeConfig`.
        evaluate: called with the (soft, unpruned) tree in eval mode every ``eval_every``
            epochs and after the last; its dict joins that epoch's history row (e.g.
            validation accuracy, for a curve of accuracy against epochs).
    Returns the model in eval mode; ``model.summary`` holds prototypes/leaves before
    and after pruning, depth, greedy path lengths, per-epoch loss and accuracy.
    """
    cfg = cfg or ProtoTreeConfig()
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    tail = copy.deepcopy(tail).to(device)
    cf = _tail_channels(tail, feats[:1, 0].float().to(device))
    model = ProtoTree(tail, cf, num_classes, cfg.depth, cfg.feature_dim, cfg.log_probabilities, cfg.add_on,
                      cfg.headline).to(device)
    with torch.no_grad():
        model.prototypes.normal_(cfg.proto_init_mean, cfg.proto_init_std)
    opt = torch.optim.Adam(
        [
            {"params": list(model.tail.parameters()), "lr": cfg.lr_tail},
            {"params": list(model.add_on.parameters()), "lr": cfg.lr_add_on},
            {"params": [model.prototypes], "lr": cfg.lr_prototypes},
        ],
        eps=cfg.adam_eps,
    )
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(cfg.milestones), cfg.lr_gamma)
    n = feats.shape[0]
    num_batches = math.ceil(n / cfg.batch_size)
    history: list[dict[str, float]] = []
    start = time.time()
    for epoch in range(cfg.epochs):
        frozen = epoch < cfg.warm_epochs
        model.train()
        # Warm-up: tail frozen (no gradient; BN statistics fixed unless warm_bn_frozen is False, as official).
        model.tail.train(not (frozen and cfg.warm_bn_frozen))
        for p in model.tail.parameters():
            p.requires_grad_(not frozen)
        epoch_start = model.leaf_logits.clone()
        total_loss = correct = seen = 0.0
        bar = tqdm(
            iterate_batches(feats, labels, cfg.batch_size, shuffle=True, random_flip=True, generator=gen, device=device),
            total=num_batches, desc=f"ProtoTree epoch {epoch + 1}/{cfg.epochs}" + (" (warm-up)" if frozen else ""),
            disable=not progress, leave=False,
        )
        for batch in bar:
            min_dist = model.nearest_distances(batch.x)
            out, path = model.tree_output(min_dist)
            log_out = out if cfg.log_probabilities else torch.log(out)
            loss = F.nll_loss(log_out, batch.y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            # Leaves after the step, with the path/output of this forward (as the reference).
            model.update_leaves(path.detach(), out.detach(), batch.y, epoch_start, num_batches)
            total_loss += loss.item() * len(batch.y)
            correct += (out.argmax(1) == batch.y).sum().item()
            seen += len(batch.y)
            bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{correct / seen:.3f}")
        sched.step()
        history.append({"epoch": epoch + 1, "loss": total_loss / seen, "train_acc_soft": correct / seen})
        if evaluate is not None and ((epoch + 1) % eval_every == 0 or epoch + 1 == cfg.epochs):
            model.eval()
            with torch.no_grad():
                history[-1].update(evaluate(model))
    for p in model.tail.parameters():
        p.requires_grad_(True)
    model.eval()
    pruning = model.prune(cfg.pruning_threshold, cfg.prune_root_children)
    projection = model.project(feats, labels, cfg.batch_size, cfg.class_constrained_projection, progress)
    lengths = []
    with torch.no_grad():
        for batch in iterate_batches(feats, labels, 256, shuffle=False, random_flip=False, device=device):
            lengths.append(model.greedy_paths(model.nearest_distances(batch.x))[2])
    lengths_t = torch.cat(lengths).float()
    model.summary = {
        **pruning,
        "depth": cfg.depth,
        "max_path_length": model.max_path_length,
        "mean_greedy_path_length_train": lengths_t.mean().item(),
        "projection_mean_distance": projection["mean_distance"],
        "projection_fallback_nodes": projection["fallback_nodes"],
        "history": history,
        "train_seconds": time.time() - start,
    }
    return model
