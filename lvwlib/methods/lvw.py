"""The prototype-network family: LVW, LVW w/o alignment and ProtoPNet (three Table 1 rows).

All three train a :class:`~lvwlib.core.model.PrototypeNet` with the three-stage
protocol of :func:`lvwlib.core.train.train_prototype_net` (method.md sections 2-5)
and differ only in their :class:`~lvwlib.core.config.LVWConfig`:

- ``lvw``: the params' ``lvw:`` section (attention alignment, class-agnostic words);
- ``lvw_noalign``: the same with ``beta_align = 0``;
- ``protopnet``: class-specific words, ProtoPNet's separation loss and 10 words per
  class (:data:`PROTOPNET_DEFAULTS`), overridden by the params' ``protopnet:`` section.

Training resumes from a per-epoch checkpoint, and reads its images through a batch
source, so it runs under torchrun (DDP) and on streamed images (``tail: all``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from torch import nn

from lvwlib.core.config import LVWConfig, RunConfig
from lvwlib.core.model import PrototypeNet
from lvwlib.core.seeding import seed_everything
from lvwlib.core.train import train_prototype_net
from lvwlib.methods import protonet
from lvwlib.methods.registry import FitContext, Fitted, Method, register

# ProtoPNet = the prototype network with class-specific words (method.md section 5);
# these are its defaults, which the params' protopnet section may override.
PROTOPNET_DEFAULTS = {"words_per_class": 10, "class_specific": True, "separation": -0.08, "beta_align": 0.0}


def lvw_settings(run: RunConfig, sections: Mapping[str, Any], seed: int) -> dict[str, Any]:
    return {"lvw": dataclasses.replace(run.lvw, seed=seed)}


def noalign_settings(run: RunConfig, sections: Mapping[str, Any], seed: int) -> dict[str, Any]:
    return {"lvw": dataclasses.replace(run.lvw, seed=seed, beta_align=0.0)}


def protopnet_settings(run: RunConfig, sections: Mapping[str, Any], seed: int) -> dict[str, Any]:
    overrides = dict(sections.get("protopnet") or {})
    cfg = dataclasses.replace(run.lvw, seed=seed)
    return {"lvw": dataclasses.replace(cfg, **{**PROTOPNET_DEFAULTS, **overrides, "class_specific": True})}


def build_network(tail: nn.Module, feature_channels: int, num_classes: int, cfg: LVWConfig) -> PrototypeNet:
    """A fresh network on ``tail`` (already the starting copy: ImageNet or the fine-tuned base)."""
    return PrototypeNet(tail, feature_channels, num_classes, cfg.words_per_class, cfg.feature_dim, seed=cfg.seed)


def fit(ctx: FitContext) -> Fitted:
    """Train (or resume / load from the checkpoint); the result row gets history, last push, M."""
    cfg = ctx.settings["lvw"]
    seed_everything(ctx.seed)
    model = build_network(ctx.initial_tail(cfg.tail_init), ctx.feature_channels, ctx.num_classes, cfg)
    if cfg.word_init == "patches":
        # the unflipped view of the cached training features ([N, 2, Ct, h, w] -> [N, Ct, h, w])
        feats, labels = ctx.data("train")
        model.init_words_on_patches(feats[:, 0], labels, cfg.seed)
    state = train_prototype_net(
        model, ctx.source(cfg.beta_align > 0), None, None, cfg, checkpoint=ctx.checkpoint,
        progress=ctx.progress, runtime=ctx.runtime,
    )
    push = state.pushes[-1] if state.pushes else None
    extra = {"history": state.history, "push": push or [], "num_words": model.num_words}
    return Fitted(model, extra, words=protonet.word_sources(push))


def _family(name: str, label: str, settings: Any, order: int, **more: Any) -> Method:
    return register(Method(
        name=name, label=label, code=("lvwlib.methods.lvw",), settings=settings, fit=fit,
        build_args=protonet.build_args, rebuild=protonet.rebuild, explain=protonet.explain,
        word_maps=protonet.word_maps, word_weights=protonet.word_weights, streams=True, order=order, **more,
    ))


PROTOPNET = _family("protopnet", "ProtoPNet", protopnet_settings, 1, config=LVWConfig, partial_config=True)
LVW_NOALIGN = _family("lvw_noalign", "LVW w/o alignment", noalign_settings, 4)
LVW = _family("lvw", "LVW", lvw_settings, 5)
