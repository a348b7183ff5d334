"""SRAE's Table 1 row: the explanation module of :mod:`lvwlib.methods.srae.model` as a registered method.

SRAE explains the frozen base model of the seed (it predicts with the base
model's logits); its map is the contribution-weighted Grad-CAM of its
x-features. Its result row adds the faithfulness and orthogonality metrics
on the test set. It has no words.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from lvwlib.core.base_model import BaseModel
from lvwlib.core.config import RunConfig, from_dict, to_dict
from lvwlib.methods.registry import Explanation, FitContext, Fitted, Method, register
from lvwlib.methods.srae.model import (
    SRAE,
    SRAEConfig,
    SRAEModel,
    faithfulness_metrics,
    orthogonality_metrics,
    train_srae,
)


def settings(run: RunConfig, sections: Mapping[str, Any], seed: int) -> dict[str, Any]:
    return {"srae": dataclasses.replace(sections["srae"], seed=seed)}


def fit(ctx: FitContext) -> Fitted:
    feats, labels = ctx.data("train")
    test_feats, test_labels = ctx.data("test")
    srae = train_srae(ctx.base_model, feats, labels, ctx.settings["srae"], progress=ctx.progress,
                      device=ctx.runtime.device)
    extra = {
        "faithfulness": faithfulness_metrics(srae, ctx.base_model, test_feats),
        "orthogonality": orthogonality_metrics(srae, ctx.base_model, test_feats, test_labels),
    }
    return Fitted(srae, extra)


def explain(model: nn.Module, x: torch.Tensor, m: int) -> Explanation:
    """The base model's logits [B, C] and SRAE's one map [B, 1, h, w] (``m`` does not apply)."""
    assert isinstance(model, SRAEModel)
    with torch.no_grad():
        logits, maps = model.explain(x)
    return logits, maps, None


def build_args(model: nn.Module) -> dict[str, Any]:
    assert isinstance(model, SRAEModel)
    return {"srae": to_dict(model.config), "n": model.srae.n, "groups": model.srae.groups,
            "outputs": model.srae.outputs}


def rebuild(args: dict[str, Any], tail: nn.Module, feature_channels: int, num_classes: int) -> nn.Module:
    cfg = from_dict(SRAEConfig, args["srae"])
    srae = SRAE(feature_channels, args["n"], tuple(cfg.hidden), args["groups"], args["outputs"],
                cfg.x_activation, cfg.predictor_bias)
    return SRAEModel(BaseModel(tail, feature_channels, num_classes), srae, cfg)


METHOD = register(Method(
    name="srae",
    label="SRAE",
    code=("lvwlib.methods.srae.method",),
    settings=settings,
    fit=fit,
    build_args=build_args,
    rebuild=rebuild,
    explain=explain,
    config=SRAEConfig,
    order=6,
))
