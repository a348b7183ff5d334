"""Every trained model of Table 1 as a cached artefact, loadable by name without retraining.

:mod:`lvwlib.experiment.pipeline` stores each method's trained model (its ``state_dict``,
the plain constructor arguments needed to rebuild it, and its words' push
sources) under ``<cache_dir>/trained/<key>.pt``; the key is the method's result
key (:func:`lvwlib.experiment.pipeline.method_inputs`), so a model and its Table 1 row
always come from the same config. The file holds only tensors, lists, dicts,
strings and numbers, so it loads with ``torch.load(weights_only=True)``.

:func:`load_model` rebuilds any of the seven methods and returns a
:class:`TrainedModel` with one interface for all of them::

    model = load_model("params/quick.yaml", "imagenette", "lvw", seed=0)
    logits, maps = model.explain(x_trunk, m=10)  # [B, C], [B, m, h, w]
    model.words.push[j]                           # word j's training patch

Word-level information (scores, last-layer weights, push sources) exists for
the methods with words: LVW, LVW w/o alignment, ProtoPNet, ProtoPShare (words
= prototypes) and ProtoTree (words = the tree's node prototypes; it has no
word-to-class weights). The base model and SRAE have none.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from lvwlib.backbones.split import SplitBackbone, build_backbone
from lvwlib.core.base_model import BaseModel
from lvwlib.core.config import from_dict, load_params, to_dict
from lvwlib.core.gradcam import gradcam_maps
from lvwlib.core.model import PrototypeNet, log_similarity
from lvwlib.methods.prototree.tree import ProtoTree
from lvwlib.methods.srae.model import SRAE, SRAEConfig, SRAEModel
from lvwlib.store.cache import _canonical, cache_key
from lvwlib.store.records import save_with, write_json

if TYPE_CHECKING:  # pipeline imports this module; only type checkers see the reverse import
    from lvwlib.experiment.pipeline import BaseArtefacts, Experiment, Prepared

ARTEFACT_KIND = "trained"  # sub-folder of the cache holding the trained models
ARTEFACT_FORMAT = 1  # bump when the payload layout changes
WORD_METHODS = ("protopnet", "prototree", "protopshare", "lvw_noalign", "lvw")


class ModelNotCachedError(FileNotFoundError):
    """No trained model of this method, dataset, seed and config in the cache."""


@dataclass(frozen=True)
class PushSource:
    """The training patch a word was projected onto (its visualisation source)."""

    image: int  # index of the training image (into the cached training features)
    flip: int  # 0: the image as is, 1: its horizontal flip
    row: int  # patch row in the h x w latent grid
    col: int  # patch column


@dataclass
class WordInfo:
    """What a model's words are: M words, C classes."""

    push: list[PushSource]  # [M] where each word was pushed
    class_weights: torch.Tensor | None  # [C, M] last-layer weights (None: ProtoTree)
    word_classes: torch.Tensor | None  # [M, C] 0/1 class identities (None: ProtoTree)

    @property
    def num_words(self) -> int:
        return len(self.push)


# --------------------------------------------------------------------------- storing


def model_inputs(exp: Experiment, feature_inputs: dict[str, Any], method: str, seed: int) -> dict[str, Any]:
    """The cache inputs of ``method``'s trained model, computed without data or training.

    The same dict as :func:`lvwlib.experiment.pipeline.method_inputs` (which it calls), so
    a model and its result row share one key.
    """
    from lvwlib.experiment import pipeline

    _, cam_inputs = pipeline.base_inputs(exp, feature_inputs, seed)
    prep = SimpleNamespace(exp=exp)  # method_inputs reads prep.exp and base.inputs only
    base = SimpleNamespace(inputs=cam_inputs)
    return pipeline.method_inputs(prep, base, method, seed)  # type: ignore[arg-type]


def artefact_path(cache_dir: str | Path, inputs: dict[str, Any]) -> Path:
    """``<cache_dir>/trained/<key>.pt`` of the model with these cache inputs."""
    return Path(cache_dir) / ARTEFACT_KIND / f"{cache_key(inputs)}.pt"


def has_model(cache_dir: str | Path, inputs: dict[str, Any]) -> bool:
    return artefact_path(cache_dir, inputs).exists()


def _rows_to_push(rows: list[dict[str, Any]] | None) -> list[dict[str, int]] | None:
    if not rows:
        return None
    return [{k: int(r[k]) for k in ("image", "flip", "row", "col")} for r in rows]


def model_payload(
    prep: Prepared, method: str, seed: int, model: nn.Module, push_rows: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The weights-only payload of a trained model: state dict, how to rebuild it, push sources.

    Args:
        model: BaseModel (base), PrototypeNet (LVW family, ProtoPNet, ProtoPShare),
            ProtoTree or SRAEModel.
        push_rows: :meth:`PushRecord.as_rows` of the model's last push (words only).
    """
    build: dict[str, Any] = {
        "feature_channels": int(prep.backbone.feature_channels),
        "num_classes": int(prep.num_classes),
        "classes": list(prep.bundle.classes),
    }
    if isinstance(model, PrototypeNet):
        build.update(kind="prototype_net", feature_dim=int(model.words.shape[1]), num_words=model.num_words)
    elif isinstance(model, ProtoTree):
        build.update(kind="prototree", depth=model.init_depth, feature_dim=model.feature_dim,
                     log_probabilities=bool(model.log_probabilities))
        push_rows = [
            {"image": int(i), "flip": 0, "row": int(p[0]), "col": int(p[1])}
            for i, p in zip(model.proj_image.tolist(), model.proj_pos.tolist(), strict=True)
        ]
    elif isinstance(model, SRAEModel):
        build.update(kind="srae", srae=to_dict(model.config), n=model.srae.n, groups=model.srae.groups,
                     outputs=model.srae.outputs)
    elif isinstance(model, BaseModel):
        build.update(kind="base")
    else:
        raise TypeError(f"cannot store a {type(model).__name__} for method {method!r}")
    return {
        "format": ARTEFACT_FORMAT,
        "method": method,
        "seed": int(seed),
        "dataset": prep.exp.run.data.name,
        "build": build,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "push": _rows_to_push(push_rows),
    }


def store_model(
    prep: Prepared, base: BaseArtefacts, method: str, seed: int, model: nn.Module,
    push_rows: list[dict[str, Any]] | None = None,
) -> Path:
    """Write the trained ``model`` of ``method`` / ``seed`` to the cache (atomically); its path."""
    from lvwlib.experiment.pipeline import method_inputs

    inputs = method_inputs(prep, base, method, seed)
    path = artefact_path(prep.cache_dir, inputs)
    payload = model_payload(prep, method, seed, model, push_rows)
    save_with(path, lambda tmp: torch.save(payload, tmp))
    write_json(path.with_suffix(".json"), _canonical(inputs))
    return path


# --------------------------------------------------------------------------- loading


@dataclass
class TrainedModel:
    """A trained model of any Table 1 method behind one interface.

    ``explain(x, m)`` takes trunk features x [B, Ct, h, w] and returns the logits
    [B, C] and the m maps the method explains with [B, m', h, w] (m' = m for the
    word methods, path length for ProtoTree, 1 for base and SRAE).
    """

    method: str
    dataset: str
    seed: int
    module: nn.Module  # BaseModel | PrototypeNet | ProtoTree | SRAEModel, eval mode
    classes: list[str]
    words: WordInfo | None  # None: base, SRAE
    inputs: dict[str, Any]  # the cache inputs (full config) the model was trained with

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def has_words(self) -> bool:
        return self.words is not None

    def explain(self, x: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits [B, C], maps [B, m', h, w]) as in the Table 1 evaluation."""
        logits, maps, _ = self.explain_words(x, m)
        return logits, maps

    def explain_words(self, x: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """As :meth:`explain`, plus the word index of each map [B, m'] (None without words)."""
        x = x.float()
        mod = self.module
        if isinstance(mod, PrototypeNet):
            logits, maps = mod.explain(x, m)
            scores = self.word_scores(x)
            top = torch.topk(scores, k=min(m, mod.num_words), dim=1).indices
            return logits, maps, top
        if isinstance(mod, ProtoTree):
            return _prototree_explain(mod, x, m)
        if isinstance(mod, SRAEModel):
            with torch.no_grad():
                logits, maps = mod.explain(x)
            return logits, maps, None
        # base: its own Grad-CAM of the predicted class (at the tail output resolution)
        with torch.no_grad():
            logits = mod(x)
        cams = gradcam_maps(mod, x[:, None].expand(-1, 2, -1, -1, -1), progress=False)[:, 0]
        return logits, cams[:, None], None

    @torch.no_grad()
    def word_maps(self, x: torch.Tensor) -> torch.Tensor:
        """Activation map of every word on each image: [B, M, h, w] (words methods only)."""
        mod = self.module
        if isinstance(mod, PrototypeNet):
            return log_similarity(mod(x.float()).distances)
        if isinstance(mod, ProtoTree):
            _, dist = mod.min_distances(x.float())
            return torch.exp(-dist)
        raise ValueError(f"{self.method} has no words")

    @torch.no_grad()
    def word_scores(self, x: torch.Tensor) -> torch.Tensor:
        """Score of every word on each image (max of its map): [B, M]."""
        return self.word_maps(x).flatten(2).amax(2)


def _prototree_explain(tree: ProtoTree, x: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:meth:`ProtoTree.explain` that also returns the node (word) of each map [B, m']."""
    with torch.no_grad():
        logits, maps = tree.explain(x, m)
        min_dist, _ = tree.min_distances(x)
        _, path, length = tree.greedy_paths(min_dist)
        rows = torch.arange(x.shape[0])
        last = path[rows, length - 1]
        filled = torch.where(path >= 0, path, last[:, None])  # [B, P] node ids, root first
        if maps.shape[1] < filled.shape[1]:  # the same top-m selection as explain
            score = torch.where(path >= 0, torch.exp(-min_dist)[rows[:, None], filled], torch.full_like(
                filled, -1.0, dtype=min_dist.dtype))
            top = score.topk(m, dim=1).indices.sort(dim=1).values
            filled = filled[rows[:, None], top]
    return logits, maps, filled


_BACKBONES: dict[str, SplitBackbone] = {}


def _tail(exp: Experiment) -> tuple[nn.Module, int]:
    """A fresh copy of the backbone's tail architecture (weights come from the state dict)."""
    cfg = dataclasses.replace(exp.run.backbone, weights="none")  # no ImageNet file needed to rebuild
    key = json.dumps(to_dict(cfg), sort_keys=True)
    if key not in _BACKBONES:
        _BACKBONES[key] = build_backbone(cfg)
    backbone = _BACKBONES[key]
    return copy.deepcopy(backbone.tail), backbone.feature_channels


def rebuild(payload: dict[str, Any], exp: Experiment) -> nn.Module:
    """The module of a stored payload, its weights loaded, in eval mode."""
    build, state = payload["build"], payload["state_dict"]
    tail, cf = _tail(exp)
    c = build["num_classes"]
    kind = build["kind"]
    if kind == "prototype_net":
        model: nn.Module = PrototypeNet(tail, cf, c, words_per_class=1, feature_dim=build["feature_dim"])
        m = build["num_words"]
        # ProtoPShare has merged words: give the parameters the stored shapes first.
        model.words = nn.Parameter(torch.empty(m, build["feature_dim"]))
        model.last_layer = nn.Linear(m, c, bias=False)
        model.word_classes = torch.empty(m, c)
    elif kind == "prototree":
        model = ProtoTree(tail, cf, c, build["depth"], build["feature_dim"], build["log_probabilities"])
    elif kind == "srae":
        cfg = from_dict(SRAEConfig, build["srae"])
        srae = SRAE(cf, build["n"], tuple(cfg.hidden), build["groups"], build["outputs"],
                    cfg.x_activation, cfg.predictor_bias)
        model = SRAEModel(BaseModel(tail, cf, c), srae, cfg)
    elif kind == "base":
        model = BaseModel(tail, cf, c)
    else:
        raise ValueError(f"unknown stored model kind {kind!r}")
    model.load_state_dict(state)
    model.eval()
    return model


def _experiment(exp_or_params: Any, dataset: str) -> Experiment:
    from lvwlib.experiment.pipeline import Experiment, experiment_from_params

    if isinstance(exp_or_params, Experiment):
        if exp_or_params.run.data.name != dataset:
            raise ValueError(f"experiment is for {exp_or_params.run.data.name!r}, not {dataset!r}")
        return exp_or_params
    params = load_params(exp_or_params) if isinstance(exp_or_params, (str, Path)) else exp_or_params
    return experiment_from_params(params, dataset)


def load_model(
    exp_or_params: Any, dataset: str, method: str, seed: int = 0, prep: Prepared | None = None
) -> TrainedModel:
    """Load the trained ``method`` of ``dataset`` / ``seed`` from the cache, without retraining.

    Args:
        exp_or_params: an :class:`Experiment`, a params dict or a params yaml path.
        dataset: dataset name (``data.name``).
        method: one of :data:`lvwlib.experiment.pipeline.METHODS`.
        prep: the dataset's :class:`Prepared` if already loaded (saves listing the data).
    Raises:
        ModelNotCachedError: the model was never trained with this config; the
            message says what to run.
    """
    from lvwlib.experiment.pipeline import METHODS, feature_inputs

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    exp = prep.exp if prep is not None else _experiment(exp_or_params, dataset)
    feats_in = prep.feature_inputs if prep is not None else feature_inputs(exp)
    inputs = model_inputs(exp, feats_in, method, seed)
    from lvwlib.store.paths import resolve

    path = artefact_path(resolve(exp.run.cache_dir), inputs)
    if not path.exists():
        raise ModelNotCachedError(
            f"no trained {method!r} model for {dataset} seed {seed} in {path.parent} "
            f"(this config was never run). Train it with `make reproduce` (all methods) or "
            f"`make quick` (quick parameters), or in Python: lvwlib.experiment.pipeline.run_method(prep, base, "
            f"{method!r}, {seed})."
        )
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if payload.get("format") != ARTEFACT_FORMAT:
        raise ModelNotCachedError(f"{path} has artefact format {payload.get('format')}, expected "
                                  f"{ARTEFACT_FORMAT}: delete it and rerun the method")
    module = rebuild(payload, exp)
    words = None
    if payload["push"] is not None:
        is_net = isinstance(module, PrototypeNet)
        words = WordInfo(
            push=[PushSource(**row) for row in payload["push"]],
            class_weights=module.last_layer.weight.detach().clone() if is_net else None,
            word_classes=module.word_classes.detach().clone() if is_net else None,
        )
    return TrainedModel(method, dataset, int(seed), module, payload["build"]["classes"], words, inputs)


def available_models(cache_dir: str | Path) -> list[dict[str, Any]]:
    """(dataset, method, seed) of every stored model under ``cache_dir``, from the json sidecars."""
    rows = []
    for meta in sorted((Path(cache_dir) / ARTEFACT_KIND).glob("*.json")):
        inputs = json.loads(meta.read_text())
        rows.append({"dataset": inputs["data"]["name"], "method": inputs["method"], "seed": inputs["seed"],
                     "path": meta.with_suffix(".pt")})
    return rows
