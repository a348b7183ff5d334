"""ProtoTree's Table 1 row: the tree of :mod:`lvwlib.methods.prototree.tree` as a registered method.

It starts from the same tail as the prototype-network rows (``lvw.tail_init``),
so the rows differ only in the method. Its words are the prototypes of the tree's
internal nodes, each projected onto a training patch; it has no word-to-class weights.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from lvwlib.core.config import RunConfig
from lvwlib.methods.prototree.tree import (
    ProtoTree,
    ProtoTreeConfig,
    evaluate_strategies,
    train_prototree,
)
from lvwlib.methods.registry import Explanation, FitContext, Fitted, Method, register


def settings(run: RunConfig, sections: Mapping[str, Any], seed: int) -> dict[str, Any]:
    return {"prototree": dataclasses.replace(sections["prototree"], seed=seed), "tail_init": run.lvw.tail_init}


def _train(ctx: FitContext, cfg: ProtoTreeConfig, **more: Any) -> ProtoTree:
    feats, labels = ctx.data("train")
    return train_prototree(
        ctx.initial_tail(ctx.settings["tail_init"]), feats, labels, ctx.num_classes, cfg,
        progress=ctx.progress, device=ctx.runtime.device, **more,
    )


def strategies(ctx: FitContext, tree: ProtoTree) -> dict[str, dict[str, float]]:
    """:func:`evaluate_strategies` of the pruned, projected tree on each split the run has
    besides train (val, test): the three official accuracies, the fidelity of sample_max
    and greedy to the soft tree, and the share of images ending in near-uniform leaves."""
    out = {}
    for split in ("val", "test"):
        try:
            feats, labels = ctx.data(split)
        except ValueError:  # no validation split (data.val_fraction 0)
            continue
        out[split] = evaluate_strategies(tree, feats, labels, device=ctx.runtime.device)
    return out


def fit(ctx: FitContext) -> Fitted:
    tree = _train(ctx, ctx.settings["prototree"])
    words = [
        {"image": int(i), "row": int(p[0]), "col": int(p[1])}
        for i, p in zip(tree.proj_image.tolist(), tree.proj_pos.tolist(), strict=True)
    ]
    extra = {"summary": tree.summary, "strategies": strategies(ctx, tree), "headline": tree.headline}
    return Fitted(tree, extra, words=words)


def curve(ctx: FitContext, epochs: int, eval_every: int = 10) -> list[dict[str, Any]]:
    """Validation accuracy of the soft tree (all leaves, before pruning and projection) every
    ``eval_every`` epochs of one run of ``epochs``: where training stops improving.

    Table 1 reports the pruned, projected tree's ``headline`` accuracy on test (greedy by default); this
    is a proxy (the soft tree's, before pruning and projection).
    Returns the history rows that have ``val_acc_soft`` (epoch, loss, train_acc_soft, val_acc_soft).
    """
    val_feats, val_labels = ctx.data("val")
    device = ctx.runtime.device

    def val_accuracy(tree: ProtoTree) -> dict[str, float]:
        correct = 0
        for start in range(0, len(val_labels), 128):
            x = val_feats[start : start + 128, 0].float().to(device)
            out, _ = tree.tree_output(tree.min_distances(x)[0])
            correct += (out.argmax(1).cpu() == val_labels[start : start + 128]).sum().item()
        return {"val_acc_soft": correct / len(val_labels)}

    torch.manual_seed(ctx.seed)
    cfg = dataclasses.replace(ctx.settings["prototree"], epochs=epochs)
    tree = _train(ctx, cfg, evaluate=val_accuracy, eval_every=eval_every)
    return [row for row in tree.summary["history"] if "val_acc_soft" in row]


def explain(tree: nn.Module, x: torch.Tensor, m: int) -> Explanation:
    """:meth:`ProtoTree.explain` (the ``headline`` strategy's prediction, default greedy; the greedy
    path's maps) plus the node (word) of each map [B, m']."""
    assert isinstance(tree, ProtoTree)
    with torch.no_grad():
        logits, maps = tree.explain(x, m, tree.headline)
        min_dist, _ = tree.min_distances(x)
        _, path, length = tree.greedy_paths(min_dist)
        rows = torch.arange(x.shape[0], device=path.device)
        last = path[rows, length - 1]
        filled = torch.where(path >= 0, path, last[:, None])  # [B, P] node ids, root first
        if maps.shape[1] < filled.shape[1]:  # the same top-m selection as explain
            score = torch.where(path >= 0, torch.exp(-min_dist)[rows[:, None], filled], torch.full_like(
                filled, -1.0, dtype=min_dist.dtype))
            top = score.topk(m, dim=1).indices.sort(dim=1).values
            filled = filled[rows[:, None], top]
    return logits, maps, filled


@torch.no_grad()
def word_maps(tree: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """exp(-||z - p_n||) of every node prototype on each image: [B, I, h, w]."""
    assert isinstance(tree, ProtoTree)
    _, dist = tree.min_distances(x.float())
    return torch.exp(-dist)


def build_args(tree: nn.Module) -> dict[str, Any]:
    assert isinstance(tree, ProtoTree)
    return {"depth": tree.init_depth, "feature_dim": tree.feature_dim, "log_probabilities": bool(tree.log_probabilities),
            "add_on": tree.add_on_kind, "headline": tree.headline}


def rebuild(args: dict[str, Any], tail: nn.Module, feature_channels: int, num_classes: int) -> nn.Module:
    # Models stored before the add_on / headline options have neither key: the earlier behaviour.
    return ProtoTree(tail, feature_channels, num_classes, args["depth"], args["feature_dim"], args["log_probabilities"],
                     args.get("add_on", "protopnet"), args.get("headline", "greedy"))


METHOD = register(Method(
    name="prototree",
    label="ProtoTree",
    code=("lvwlib.methods.prototree.method",),
    settings=settings,
    fit=fit,
    build_args=build_args,
    rebuild=rebuild,
    explain=explain,
    config=ProtoTreeConfig,
    word_maps=word_maps,
    order=2,
    curve=curve,
))
