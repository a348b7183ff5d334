"""Cells already done, answered from the cache without starting a worker.

A warm ``make reproduce`` used to start its process pool (each worker importing torch
and loading every dataset's cached features) only to find every cell cached. The runner
now asks :class:`CachedCells` first: a cell whose artefacts are all in the cache under
its keys (:mod:`lvwlib.experiment.keys`) gets its progress numbers from the cache, in
this process; any other cell runs as before. The check reads no feature tensor, and
whatever it cannot settle (a streamed run, an entry from another config, a dataset it
cannot list) it leaves to the cell itself, which then fails or recomputes exactly as
it always did.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from lvwlib.core.streaming import use_streaming
from lvwlib.data import DatasetBundle, load_dataset
from lvwlib.experiment import keys, models
from lvwlib.experiment.config import Experiment
from lvwlib.store.cache import cached, canonical_inputs, read_entry_meta
from lvwlib.store.paths import resolve

SPLITS = ("train", "test", "val")


class _NotCached(Exception):
    """Raised by the compute function of a lookup: the entry must not be computed here."""


def _missing() -> Any:
    raise _NotCached


def _entry_is_current(cache_dir: Path, kind: str, inputs: dict[str, Any]) -> bool:
    """Both files of the entry exist and its record holds these inputs (not another config's)."""
    value = keys.entry_path(cache_dir, kind, inputs)
    meta = value.with_suffix(".json")
    if not (value.exists() and meta.exists()):
        return False
    try:
        return read_entry_meta(meta).get("inputs") == canonical_inputs(inputs)
    except (OSError, ValueError):
        return False


class CachedCells:
    """Answers for the cells of one experiment whose artefacts are all cached.

    Args:
        exp: the experiment (one dataset, or a calibration variant).
    """

    def __init__(self, exp: Experiment) -> None:
        self.exp = exp
        self.cache_dir = resolve(exp.run.cache_dir)
        self._bundle: DatasetBundle | None = None
        self._features: dict[str, Any] | None = None
        self._listed = False  # tried to list the dataset (once: a dataset that cannot be listed stays so)

    def _feature_inputs(self) -> dict[str, Any] | None:
        """The dataset's feature key inputs (listing the dataset once); None when it cannot be listed."""
        if not self._listed:
            self._listed = True
            try:
                self._bundle = load_dataset(self.exp.run.data)
                self._features = keys.feature_inputs(self.exp, self._bundle)
            except Exception:  # noqa: BLE001  (the cell itself reports a bad dataset, with its message)
                self._features = None
        return self._features

    def features(self) -> dict[str, float] | None:
        """The features cell's summary when every split's trunk features are cached, else None."""
        if use_streaming(self.exp.run):
            return None  # nothing cached: the tail runs on images
        inputs = self._feature_inputs()
        if inputs is None:
            return None
        splits = [s for s in SPLITS if getattr(self._bundle, s) is not None]
        if not all(_entry_is_current(self.cache_dir, "features", keys.split_inputs(inputs, s)) for s in splits):
            return None
        return {"train images": float(len(self._bundle.train.labels)),
                "test images": float(len(self._bundle.test.labels))}

    def base_model(self, seed: int) -> dict[str, float] | None:
        """The base_model cell's summary when the base model of ``seed`` and its maps are cached."""
        inputs = self._feature_inputs()
        if inputs is None:
            return None
        model_inputs, cam_inputs = keys.base_inputs(self.exp, inputs, seed)
        if not (_entry_is_current(self.cache_dir, "base_model", model_inputs)
                and _entry_is_current(self.cache_dir, "gradcam", cam_inputs)):
            return None
        stored = torch.load(keys.entry_path(self.cache_dir, "base_model", model_inputs), map_location="cpu",
                            weights_only=False)
        history = stored.get("history") or []
        return {"train_acc": float(history[-1]["train_acc"])} if history and "train_acc" in history[-1] else {}

    def method(self, method: str, seed: int) -> dict[str, Any] | None:
        """The cached Table 1 row of ``method`` and ``seed`` when it and its stored model exist, else None."""
        inputs = self._feature_inputs()
        if inputs is None:
            return None
        _, cam_inputs = keys.base_inputs(self.exp, inputs, seed)
        method_inputs = keys.method_inputs(self.exp, cam_inputs, method, seed)
        result_inputs = keys.result_inputs(method_inputs)
        # a result without its stored model is refitted by the cell (lvwlib.experiment.stages.run_method)
        if not (_entry_is_current(self.cache_dir, keys.RESULT_KIND, result_inputs)
                and models.model_path(self.cache_dir, method_inputs).exists()):
            return None
        try:  # the cache's own lookup: the same checks, load and record of the hit as in a cell
            return cached(self.cache_dir, keys.RESULT_KIND, result_inputs, _missing)
        except _NotCached:  # removed since the check: the cell computes it
            return None
