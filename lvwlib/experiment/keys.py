"""Every cache-input recipe of an experiment, in one place.

A cached artefact is keyed (:func:`lvwlib.store.cache.cache_key`) by exactly what
its value depends on: config values, the data's fingerprint, and the fingerprint
of the code that computes it (:func:`lvwlib.store.fingerprint.code_fingerprint`,
which follows that code's imports). Each recipe builds on the one before it::

    features  = data, its fingerprint, backbone, feature code   (+ streaming: images, no features)
    base      = features + base config (seed) + base code       (+ amp when mixed precision runs)
    gradcam   = base + cam target
    method    = gradcam + method name, seed, its settings, its code, the keys of what it needs
    result    = method + metrics version + evaluation code

So an edit of a method's module changes that method's keys only; an edit of the
prototype networks' losses changes LVW, LVW w/o alignment, ProtoPNet and ProtoPShare
only; an edit of the evaluation changes every result's key and no model's key (the
checkpoints of resumable training stay valid). The trained model (``trained/``) and the resumable checkpoint
(``models/``) of a method share its method key, so a model and its Table 1 row always
come from the same config, whichever process (runner, torchrun) trained them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from lvwlib.core.config import to_dict
from lvwlib.core.devices import runtime_from
from lvwlib.core.streaming import use_streaming
from lvwlib.data import DatasetBundle, load_dataset
from lvwlib.experiment.config import Experiment
from lvwlib.methods import registry
from lvwlib.store.cache import cache_key
from lvwlib.store.fingerprint import code_fingerprint

# The code each kind of artefact depends on (lvwlib.store.fingerprint follows their imports).
FEATURE_CODE = ("lvwlib.backbones.split", "lvwlib.data", "lvwlib.store.cache", "lvwlib.backbones.trunk_features")
BASE_CODE = ("lvwlib.core.gradcam", "lvwlib.core.base_model")  # the base model's training and its Grad-CAM
EVALUATION_CODE = ("lvwlib.experiment.evaluate",)  # the Table 1 evaluation loop and its metrics
# Version of the metrics in a result dict: results cached before a metric was added are recomputed
# (2: iou_reference_q<q> at every swept quantile). Trained models are keyed without it.
METRICS_VERSION = 2

CHECKPOINT_KIND = "models"  # resumable training checkpoints (lvwlib.core.train)
TRAINED_KIND = "trained"  # trained models, weights only (lvwlib.experiment.models)
RESULT_KIND = "results"  # result rows of Table 1


def feature_inputs(exp: Experiment, bundle: DatasetBundle | None = None) -> dict[str, Any]:
    """Cache inputs of the trunk features of ``exp``'s dataset (lists the data when ``bundle`` is None).

    A streaming run (``tail: all``) caches no features but its downstream artefacts
    (float32 images instead of float16 features: other numbers) get their own keys.
    """
    run = exp.run
    bundle = bundle if bundle is not None else load_dataset(run.data)
    inputs: dict[str, Any] = {
        "data": to_dict(run.data), "fingerprint": bundle.fingerprint(), "backbone": to_dict(run.backbone),
        "feature_code": code_fingerprint(*FEATURE_CODE),
    }
    if use_streaming(run):
        inputs["streaming"] = True
    return inputs


def split_inputs(inputs: dict[str, Any], split: str) -> dict[str, Any]:
    """The inputs of one split's entry (``train``, ``val``, ``test``, ``heldout``) of features or maps."""
    return {**inputs, "split": split}


def base_inputs(exp: Experiment, features: dict[str, Any], seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Cache inputs of the base model of ``seed`` and of its Grad-CAM maps."""
    base_cfg = dataclasses.replace(exp.run.base, seed=seed)
    # cam_target only changes the maps, not the model: keep it out of the model's key.
    model = {
        **features, "base": {k: v for k, v in to_dict(base_cfg).items() if k != "cam_target"},
        "base_code": code_fingerprint(*BASE_CODE),
    }
    if exp.run.amp != "none" and runtime_from(exp.run.device, exp.run.amp).amp_active:
        model["amp"] = exp.run.amp  # mixed precision changes the numbers: its artefacts get their own keys
    return model, {**model, "cam_target": base_cfg.cam_target}


def method_settings(exp: Experiment, method: str, seed: int) -> dict[str, Any]:
    """The config ``method`` trains with for ``seed`` (its :attr:`~lvwlib.methods.registry.Method.settings`)."""
    return registry.get(method).settings(exp.run, exp.configs, seed)


def method_inputs(exp: Experiment, cam_inputs: dict[str, Any], method: str, seed: int) -> dict[str, Any]:
    """Cache inputs of a trained method: the explained base model and its maps, its own config and code,
    and the keys of the methods it builds on."""
    spec = registry.get(method)
    settings = {k: to_dict(v) if dataclasses.is_dataclass(v) else v for k, v in method_settings(exp, method, seed).items()}
    inputs = {**cam_inputs, "method": method, "seed": seed, "settings": settings,
              "method_code": code_fingerprint(*spec.code)}
    if spec.needs:
        inputs["needs"] = {n: cache_key(method_inputs(exp, cam_inputs, n, seed)) for n in spec.needs}
    return inputs


def model_inputs(exp: Experiment, method: str, seed: int, features: dict[str, Any] | None = None) -> dict[str, Any]:
    """:func:`method_inputs` from the experiment alone, without training anything
    (``features``: the dataset's :func:`feature_inputs`, listed from the data when None)."""
    _, cams = base_inputs(exp, features if features is not None else feature_inputs(exp), seed)
    return method_inputs(exp, cams, method, seed)


def result_inputs(method: dict[str, Any]) -> dict[str, Any]:
    """Cache inputs of a method's Table 1 result: its method inputs and the evaluation's code."""
    return {**method, "metrics": METRICS_VERSION, "evaluation_code": code_fingerprint(*EVALUATION_CODE)}


def entry_path(cache_dir: str | Path, kind: str, inputs: dict[str, Any]) -> Path:
    """``<cache_dir>/<kind>/<key>.pt``, the file of the entry with these inputs."""
    return Path(cache_dir) / kind / f"{cache_key(inputs)}.pt"
