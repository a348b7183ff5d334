"""The registry of Table 1 methods: what a method is, in one record.

A method is one module (a folder for the larger ones) that builds a :class:`Method`
and calls :func:`register`; :mod:`lvwlib.methods` imports the built-in ones. From
the record alone the experiment layer trains it (:attr:`Method.fit`), keys its
cache entries (:attr:`Method.code`, :attr:`Method.settings`, :attr:`Method.needs`),
evaluates it and stores and rebuilds its model (:attr:`Method.build_args`,
:attr:`Method.rebuild`), so adding a method touches no other file::

    register(Method(name="mine", label="Mine", code=("my_module",), settings=..., fit=...,
                    build_args=..., rebuild=..., explain=...))

Every trained model answers one question, :attr:`Method.explain`::

    logits, maps, word_ids = method.explain(module, x, m)
    # x [B, Ct, h, w] trunk features -> logits [B, C], maps [B, m', h, w], word_ids [B, m'] or None

This module imports no method module: a method's code fingerprint follows its
imports, and must not take in the other methods.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lvwlib.core.config import RunConfig
from lvwlib.core.devices import Runtime

# logits [B, C], maps [B, m', h, w], word ids [B, m'] (None for a method without words)
Explanation = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]
# (x [B, Ct, h, w], image index [B] into the split, split name) -> (logits [B, C], maps [B, m', h, w])
EvaluationFn = Callable[[torch.Tensor, torch.Tensor, str], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class Fitted:
    """What :attr:`Method.fit` returns."""

    module: nn.Module  # the trained model, in eval mode
    extra: dict[str, Any] = field(default_factory=dict)  # fields of the method's result row (history, summary, ...)
    # per word, the training patch it was pushed onto, {image, row, col} (plain ints; a stored model
    # gives them back as lvwlib.core.push.WordSource, which this module does not import: it would
    # put the prototype network's code into every method's fingerprint); None: no words
    words: list[dict[str, int]] | None = None
    # How the Table 1 evaluation explains, when not by explain(module, x, m): the base row
    # explains with its cached Grad-CAM maps, looked up by image index and split.
    evaluate: EvaluationFn | None = None


@dataclass
class Needed:
    """A trained model another method builds on (:attr:`Method.needs`)."""

    fitted: Fitted
    settings: dict[str, Any]  # the config it was trained with (its Method.settings)


@dataclass
class FitContext:
    """Everything a method's ``fit`` may use, filled by :mod:`lvwlib.experiment.stages`.

    Tensors stay on the CPU; ``source`` batches go to ``runtime.device``.
    """

    seed: int
    settings: dict[str, Any]  # Method.settings of this run: the config the method trains with
    num_classes: int  # C
    feature_channels: int  # Cf, channels of the tail output
    imagenet_tail: nn.Module  # the backbone's tail with its ImageNet weights (copy it before training)
    base_model: nn.Module  # the trained base model of this seed (BaseModel; do not modify)
    runtime: Runtime  # device and autocast of this process
    checkpoint: Path  # a file to write and resume training from (unique to this method's cache key)
    progress: bool  # show progress bars
    # (trunk features [N, 2, Ct, h, w] float16, labels [N]) of "train", "val" or "test"; raises when
    # the images are streamed (no cached features)
    data: Callable[[str], tuple[torch.Tensor, torch.Tensor]]
    # the training images as a batch source of this process's shard (with the Grad-CAM maps or not):
    # what methods that train under torchrun or on streamed images read
    source: Callable[[bool], Any]
    cams: Callable[[str], torch.Tensor]  # the base model's Grad-CAM [N, 2, hc, wc] of a split
    needed: dict[str, Needed] = field(default_factory=dict)  # the trained models of Method.needs

    def initial_tail(self, tail_init: str) -> nn.Module:
        """A copy of the tail a method starts from: ``imagenet`` weights or the fine-tuned ``base`` model's."""
        if tail_init not in ("imagenet", "base"):
            raise ValueError(f"tail_init must be 'imagenet' or 'base', got {tail_init!r}")
        return copy.deepcopy(self.base_model.tail if tail_init == "base" else self.imagenet_tail)


@dataclass(frozen=True)
class Method:
    """One Table 1 method (a row), everything the experiment layer needs to run it.

    Args:
        name: identifier in params files (``methods:``), cache keys and the command line.
        label: the row's name in tables and figures.
        code: module names whose sources (and what they import) key the method's cache
            entries: usually the method's own module.
        settings: (run config, params sections by name, seed) -> the config the method trains
            with, as named parts (dataclasses or plain values); they enter the cache key and
            reach ``fit`` as :attr:`FitContext.settings`.
        fit: trains (or resumes from ``FitContext.checkpoint``) and returns :class:`Fitted`.
        build_args: the plain constructor arguments of a trained module (stored with its weights).
        rebuild: (build args, a fresh tail, Cf, C) -> an untrained module of the stored shapes.
        explain: (module, x [B, Ct, h, w], m) -> :data:`Explanation`.
        config: the dataclass of the params section ``<name>:`` (None: no section).
        partial_config: the section holds overrides of some of ``config``'s fields only.
        needs: methods whose trained model ``fit`` builds on (FitContext.needed).
        word_maps: (module, x) -> every word's map [B, M, h, w] (None: a method without words).
        word_weights: module -> (last-layer weights [C, M], word classes [M, C]), either may be None.
        streams: ``fit`` reads only ``FitContext.source``, so it trains under torchrun (DDP) and
            on streamed images; otherwise it needs the cached feature tensors of one process.
        order: position among the rows of Table 1 (ties: registration order).
        curve: optional (context, epochs, eval_every) -> rows of validation accuracy against
            training epochs (for choosing the number of epochs; ``lvwlib calibrate --curve``).
        reference: the row of the base model itself, which every method is compared with
            (the calibration's gap); one registered method has it.
    """

    name: str
    label: str
    code: tuple[str, ...]
    settings: Callable[[RunConfig, Mapping[str, Any], int], dict[str, Any]]
    fit: Callable[[FitContext], Fitted]
    build_args: Callable[[nn.Module], dict[str, Any]]
    rebuild: Callable[[dict[str, Any], nn.Module, int, int], nn.Module]
    explain: Callable[[nn.Module, torch.Tensor, int], Explanation]
    config: type | None = None
    partial_config: bool = False
    needs: tuple[str, ...] = ()
    word_maps: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None
    word_weights: Callable[[nn.Module], tuple[torch.Tensor | None, torch.Tensor | None]] | None = None
    streams: bool = False
    order: int = 100
    curve: Callable[[FitContext, int, int], list[dict[str, Any]]] | None = None
    reference: bool = False

    @property
    def has_words(self) -> bool:
        return self.word_maps is not None


_METHODS: dict[str, Method] = {}


def register(method: Method, replace: bool = False) -> Method:
    """Add ``method`` to the registry (``replace``: over a method of the same name); returns it."""
    if not method.name or not method.name.replace("_", "").isalnum():
        raise ValueError(f"a method name is letters, digits and underscores, got {method.name!r}")
    if method.name in _METHODS and not replace:
        raise ValueError(f"method {method.name!r} is registered already (register(..., replace=True) to replace it)")
    if not method.code:
        raise ValueError(f"method {method.name!r}: code must name the module(s) its cache key hashes")
    missing = [n for n in method.needs if n not in _METHODS]
    if missing:
        raise ValueError(f"method {method.name!r} needs {missing}: register those first")
    _METHODS[method.name] = method
    return method


def unregister(name: str) -> None:
    """Remove a method (tests restore the registry with it)."""
    get(name)
    if any(name in m.needs for m in _METHODS.values()):
        raise ValueError(f"method {name!r} is needed by another registered method")
    del _METHODS[name]


def get(name: str) -> Method:
    """The registered method ``name``; ValueError naming the known ones otherwise."""
    if name not in _METHODS:
        raise ValueError(f"unknown method {name!r}; known: {', '.join(names())}")
    return _METHODS[name]


def names() -> tuple[str, ...]:
    """Every registered method, in Table 1 order."""
    position = {name: i for i, name in enumerate(_METHODS)}
    return tuple(sorted(_METHODS, key=lambda n: (_METHODS[n].order, position[n])))


def reference() -> str:
    """The registered row of the base model itself (:attr:`Method.reference`)."""
    found = [name for name in names() if _METHODS[name].reference]
    if len(found) != 1:
        raise ValueError(f"expected one reference method (the base model's row), found {found}")
    return found[0]


def label(name: str) -> str:
    """The Table 1 row name of ``name``."""
    return get(name).label


def labels() -> dict[str, str]:
    """name -> Table 1 row name, for every registered method in Table 1 order."""
    return {name: _METHODS[name].label for name in names()}
