"""Base + Grad-CAM: the fine-tuned base model explained by its own Grad-CAM (Table 1's first row).

The base model itself is trained once per seed by the experiment's base stage
(:func:`lvwlib.core.gradcam.train_base_model`), because every other method
builds on it (its Grad-CAM maps guide LVW's alignment). This row's ``fit`` only
takes it over; its evaluation explains with the cached Grad-CAM maps the
others are compared against, so its IoU is 1 by construction (computed
anyway). A stored base model explains by computing Grad-CAM of its predicted
class.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from lvwlib.core.base_model import BaseModel
from lvwlib.core.config import RunConfig
from lvwlib.core.gradcam import gradcam_maps
from lvwlib.methods.registry import Explanation, FitContext, Fitted, Method, register


def settings(run: RunConfig, sections: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """Nothing of its own: the base model's config is in every method's key already."""
    return {}


def fit(ctx: FitContext) -> Fitted:
    base = ctx.base_model

    def evaluate(x: torch.Tensor, index: torch.Tensor, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        # the cached maps of the orientation evaluated (0: unflipped): [B, 1, hc, wc]
        return base(x), ctx.cams(split)[index, 0][:, None].to(x.device)

    return Fitted(base, evaluate=evaluate)


def explain(module: nn.Module, x: torch.Tensor, m: int) -> Explanation:
    """Logits [B, C] and the Grad-CAM map of each image's predicted class [B, 1, h, w] (tail resolution)."""
    with torch.no_grad():
        logits = module(x)
    cams = gradcam_maps(module, x[:, None].expand(-1, 2, -1, -1, -1), progress=False)[:, 0]
    return logits, cams[:, None], None


def rebuild(args: dict[str, Any], tail: nn.Module, feature_channels: int, num_classes: int) -> nn.Module:
    return BaseModel(tail, feature_channels, num_classes)


METHOD = register(Method(
    name="base",
    label="Base + Grad-CAM",
    code=("lvwlib.methods.base",),
    settings=settings,
    fit=fit,
    build_args=lambda module: {},
    rebuild=rebuild,
    explain=explain,
    streams=True,
    order=0,
    reference=True,
))
