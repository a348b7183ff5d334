"""Every trained model of Table 1 as a cached artefact, loadable by name without retraining.

The stages (:func:`lvwlib.experiment.stages.run_method`, in one process or under
torchrun) store each method's trained model: its ``state_dict``, the plain
constructor arguments needed to rebuild it (:attr:`Method.build_args`) and its
words' push sources, under ``<cache_dir>/trained/<key>.pt``. The key is the
method's key (:func:`lvwlib.experiment.keys.method_inputs`), so a model and its
Table 1 row always come from the same config. The file holds only tensors, lists,
dicts, strings and numbers, so it loads with ``torch.load(weights_only=True)``.

:func:`load_model` rebuilds any registered method and returns a
:class:`TrainedModel` with one interface for all of them::

    model = load_model("params/quick.yaml", "imagenette", "lvw", seed=0)
    logits, maps, word_ids = model.explain(x_trunk, m=10)  # [B, C], [B, m, h, w], [B, m] or None
    model.words.push[j]                                     # word j's training patch (a WordSource)

Word-level information (scores, last-layer weights, push sources) exists for the
methods with words (:attr:`Method.word_maps`): LVW, LVW w/o alignment, ProtoPNet,
ProtoPShare (words = prototypes) and ProtoTree (words = the tree's node prototypes;
it has no word-to-class weights). The base model and SRAE have none.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lvwlib.backbones.split import SplitBackbone, build_backbone
from lvwlib.core.config import load_params, to_dict
from lvwlib.core.push import WordSource
from lvwlib.experiment import keys
from lvwlib.experiment.config import Experiment, experiment_from_params
from lvwlib.experiment.evaluate import EVAL_BATCH
from lvwlib.methods import registry
from lvwlib.methods.registry import Explanation, Fitted
from lvwlib.store.cache import canonical_inputs
from lvwlib.store.paths import resolve
from lvwlib.store.records import save_with, write_json

ARTEFACT_FORMAT = 2  # bump when the payload layout changes (2: registry build args, push sources without flip)


class ModelNotCachedError(FileNotFoundError):
    """No trained model of this method, dataset, seed and config in the cache."""


@dataclass
class WordInfo:
    """What a model's words are: M words, C classes."""

    push: list[WordSource]  # [M] where each word was pushed
    class_weights: torch.Tensor | None  # [C, M] last-layer weights (None: ProtoTree)
    word_classes: torch.Tensor | None  # [M, C] 0/1 class identities (None: ProtoTree)

    @property
    def num_words(self) -> int:
        return len(self.push)


# --------------------------------------------------------------------------- storing


def model_path(cache_dir: str | Path, method_inputs: dict[str, Any]) -> Path:
    """``<cache_dir>/trained/<key>.pt`` of the model with these method inputs."""
    return keys.entry_path(cache_dir, keys.TRAINED_KIND, method_inputs)


def model_exists(exp: Experiment, method: str, seed: int, features: dict[str, Any] | None = None) -> bool:
    """Is ``method`` of ``exp``'s dataset and ``seed`` in the cache? (``features``: the dataset's
    :func:`~lvwlib.experiment.keys.feature_inputs`, listed from the data when None.)"""
    inputs = keys.model_inputs(exp, method, seed, features)
    return model_path(resolve(exp.run.cache_dir), inputs).exists()


def store_model(
    cache_dir: str | Path, method_inputs: dict[str, Any], fitted: Fitted, *, dataset: str, classes: list[str],
    feature_channels: int,
) -> Path:
    """Write the trained model of a method (atomically), with a json of its cache inputs; its path.

    Args:
        method_inputs: :func:`lvwlib.experiment.keys.method_inputs` of the model (method and seed in it).
        fitted: what the method's ``fit`` returned.
    """
    method = registry.get(method_inputs["method"])
    module = fitted.module
    payload = {
        "format": ARTEFACT_FORMAT,
        "method": method.name,
        "seed": int(method_inputs["seed"]),
        "dataset": dataset,
        "build": {"feature_channels": int(feature_channels), "num_classes": len(classes), "classes": list(classes),
                  **method.build_args(module)},
        "state_dict": {k: v.detach().cpu().clone() for k, v in module.state_dict().items()},
        "push": [{k: int(w[k]) for k in ("image", "row", "col")} for w in fitted.words] if fitted.words else None,
    }
    path = model_path(cache_dir, method_inputs)
    save_with(path, lambda tmp: torch.save(payload, tmp))
    write_json(path.with_suffix(".json"), canonical_inputs(method_inputs))
    return path


# --------------------------------------------------------------------------- loading


@dataclass
class TrainedModel:
    """A trained model of any registered method behind one interface.

    ``explain(x, m)`` takes trunk features x [B, Ct, h, w] and returns the logits
    [B, C], the maps the method explains with [B, m', h, w] (m' = m for the word
    methods, the path length for ProtoTree, 1 for base and SRAE) and the word of
    each map [B, m'] (None without words), as in the Table 1 evaluation.
    """

    method: str
    dataset: str
    seed: int
    module: nn.Module  # the method's model (BaseModel, PrototypeNet, ProtoTree, SRAEModel, ...), eval mode
    classes: list[str]
    words: WordInfo | None  # None: a method without words (base, SRAE)
    inputs: dict[str, Any]  # the cache inputs (full config) the model was trained with

    @property
    def label(self) -> str:
        return registry.label(self.method)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def has_words(self) -> bool:
        return self.words is not None

    def explain(self, x: torch.Tensor, m: int) -> Explanation:
        """(logits [B, C], maps [B, m', h, w], word ids [B, m'] or None)."""
        return registry.get(self.method).explain(self.module, x.float(), m)

    def word_maps(self, x: torch.Tensor) -> torch.Tensor:
        """Activation map of every word on each image: [B, M, h, w] (methods with words only)."""
        method = registry.get(self.method)
        if method.word_maps is None:
            raise ValueError(f"{method.label} has no words")
        return method.word_maps(self.module, x)

    @torch.no_grad()
    def word_scores(self, x: torch.Tensor) -> torch.Tensor:
        """Score of every word on each image (max of its map): [B, M]."""
        return self.word_maps(x).flatten(2).amax(2)


@torch.no_grad()
def explained_maps(model: TrainedModel, feats: torch.Tensor, m: int, batch_size: int = EVAL_BATCH) -> torch.Tensor:
    """The maps each image is explained with, as in Table 1: feats [N, 2, Ct, h, w] (index 0: the
    image, not its flip) -> [N, m', h, w] float32, ``batch_size`` images at a time."""
    out = [model.explain(feats[i : i + batch_size, 0].float(), m)[1].detach().float()
           for i in range(0, feats.shape[0], batch_size)]
    return torch.cat(out)


def push_cells(push: list[WordSource] | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Rows [M] and columns [M] of the words' push locations on the grid; (None, None) without words."""
    if not push:
        return None, None
    return torch.tensor([p.row for p in push]), torch.tensor([p.col for p in push])


_BACKBONES: dict[str, SplitBackbone] = {}


def _tail(exp: Experiment) -> nn.Module:
    """A fresh copy of the backbone's tail architecture (weights come from the state dict)."""
    cfg = dataclasses.replace(exp.run.backbone, weights="none")  # no ImageNet file needed to rebuild
    key = json.dumps(to_dict(cfg), sort_keys=True)
    if key not in _BACKBONES:
        _BACKBONES[key] = build_backbone(cfg)
    return copy.deepcopy(_BACKBONES[key].tail)


def rebuild(payload: dict[str, Any], exp: Experiment) -> nn.Module:
    """The module of a stored payload, its weights loaded, in eval mode."""
    build = payload["build"]
    method = registry.get(payload["method"])
    model = method.rebuild(build, _tail(exp), build["feature_channels"], build["num_classes"])
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model


def _experiment(exp_or_params: Any, dataset: str) -> Experiment:
    if isinstance(exp_or_params, Experiment):
        if exp_or_params.run.data.name != dataset:
            raise ValueError(f"experiment is for {exp_or_params.run.data.name!r}, not {dataset!r}")
        return exp_or_params
    params = load_params(resolve(exp_or_params)) if isinstance(exp_or_params, (str, Path)) else exp_or_params
    return experiment_from_params(params, dataset)


def load_model(exp_or_params: Any, dataset: str, method: str, seed: int = 0, prep: Any = None) -> TrainedModel:
    """Load the trained ``method`` of ``dataset`` / ``seed`` from the cache, without retraining.

    Args:
        exp_or_params: an :class:`Experiment`, a params dict or a params yaml path.
        dataset: dataset name (``data.name``).
        method: a registered method (:func:`lvwlib.methods.registry.names`).
        prep: the dataset's :class:`lvwlib.experiment.stages.Prepared` if already loaded (saves
            listing the data).
    Raises:
        ModelNotCachedError: the model was never trained with this config; the
            message says what to run.
    """
    spec = registry.get(method)
    exp = prep.exp if prep is not None else _experiment(exp_or_params, dataset)
    inputs = keys.model_inputs(exp, method, seed, prep.feature_inputs if prep is not None else None)
    path = model_path(resolve(exp.run.cache_dir), inputs)
    if not path.exists():
        raise ModelNotCachedError(
            f"no trained {method!r} model for {dataset} seed {seed} in {path.parent} "
            f"(this config was never run). Train it with `python -m lvwlib run --params <params file> "
            f"--datasets {dataset} --methods {method}`, `make reproduce` (all methods) or `make quick` "
            f"(quick parameters), or in Python: lvwlib.experiment.stages.run_method(prep, base, {method!r}, {seed})."
        )
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if payload.get("format") != ARTEFACT_FORMAT:
        raise ModelNotCachedError(f"{path} has artefact format {payload.get('format')}, expected "
                                  f"{ARTEFACT_FORMAT}: delete it and rerun the method")
    module = rebuild(payload, exp)
    words = None
    if payload["push"] is not None:
        class_weights, word_classes = spec.word_weights(module) if spec.word_weights else (None, None)
        words = WordInfo([WordSource(**row) for row in payload["push"]], class_weights, word_classes)
    return TrainedModel(method, dataset, int(seed), module, payload["build"]["classes"], words, inputs)


def available_models(cache_dir: str | Path) -> list[dict[str, Any]]:
    """(dataset, method, seed, path) of every stored model under ``cache_dir``, from the json sidecars."""
    rows = []
    for meta in sorted((Path(cache_dir) / keys.TRAINED_KIND).glob("*.json")):
        inputs = json.loads(meta.read_text())
        rows.append({"dataset": inputs["data"]["name"], "method": inputs["method"], "seed": inputs["seed"],
                     "path": meta.with_suffix(".pt")})
    return rows
