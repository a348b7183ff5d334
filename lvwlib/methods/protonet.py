"""What every method built on :class:`~lvwlib.core.model.PrototypeNet` shares: LVW, LVW w/o
alignment, ProtoPNet (:mod:`lvwlib.methods.lvw`) and ProtoPShare (:mod:`lvwlib.methods.protopshare`).

How a trained network is stored (plain constructor arguments) and rebuilt, how it
explains (the maps of each image's m top-scoring words and their ids), its words'
maps and weights, and its push record as word sources. A word is a prototype; its
source is the training patch its last push projected it onto.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lvwlib.core.model import PrototypeNet, log_similarity
from lvwlib.methods.registry import Explanation


def build_args(model: nn.Module) -> dict[str, Any]:
    """D and M: ProtoPShare's merged networks have fewer words than words_per_class * C."""
    assert isinstance(model, PrototypeNet)
    return {"feature_dim": int(model.words.shape[1]), "num_words": model.num_words}


def rebuild(args: dict[str, Any], tail: nn.Module, feature_channels: int, num_classes: int) -> nn.Module:
    """An untrained network with the stored shapes (its weights come from the state dict)."""
    model = PrototypeNet(tail, feature_channels, num_classes, words_per_class=1, feature_dim=args["feature_dim"])
    m = args["num_words"]
    model.words = nn.Parameter(torch.empty(m, args["feature_dim"]))
    model.last_layer = nn.Linear(m, num_classes, bias=False)
    model.word_classes = torch.empty(m, num_classes)
    return model


@torch.no_grad()
def word_maps(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Similarity map log((d + 1) / (d + 1e-4)) of every word on each image: [B, M, h, w]."""
    return log_similarity(model(x.float()).distances)


def explain(model: nn.Module, x: torch.Tensor, m: int) -> Explanation:
    """Logits [B, C], the maps of the m top-scoring words [B, m, h, w] and their ids [B, m]."""
    assert isinstance(model, PrototypeNet)
    logits, maps = model.explain(x, m)
    scores = word_maps(model, x).flatten(2).amax(2)  # [B, M]
    top = torch.topk(scores, k=min(m, model.num_words), dim=1).indices
    return logits, maps, top


def word_weights(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Last-layer weights [C, M] and 0/1 class identities [M, C] of the words."""
    assert isinstance(model, PrototypeNet)
    return model.last_layer.weight.detach().clone(), model.word_classes.detach().clone()


def word_sources(push_rows: list[dict[str, Any]] | None) -> list[dict[str, int]] | None:
    """Each word's source patch {image, row, col} from the rows of its last push (None: never pushed)."""
    if not push_rows:
        return None
    return [{"image": int(r["image"]), "row": int(r["row"]), "col": int(r["col"])} for r in push_rows]
