"""One session for every notebook, lesson and the explorer: one dataset and seed of one params file.

    from lvwlib.ui import session
    s = session.open("params/tiny.yaml", "synthetic", seed=0, results_dir="runs/x", name="figure2")
    s.exp, s.prep, s.base      # experiment; data + cached trunk features; base model + Grad-CAM
    s.model("lvw")             # the trained model (a TrainedModel), from the cache (trained if missing)
    s.analyses                 # the params' ``analyses:`` section (AnalysesConfig)
    s.out_dir                  # results_dir / results_name(dataset): never inside a dataset folder
    s.finish({"summary": ...}) # writes out_dir/run_figure2.json (config, environment, wall time)

The run record starts when the session opens and is written by :meth:`Session.finish`
(or on leaving ``with session.open(...) as s:``), so no notebook enters or exits it by hand.
"""

from __future__ import annotations

import dataclasses
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch

from lvwlib.core.config import AnalysesConfig, load_params, replace
from lvwlib.experiment.config import Experiment, experiment_from_params
from lvwlib.experiment.models import ModelNotCachedError, TrainedModel, load_model
from lvwlib.experiment.names import results_name
from lvwlib.experiment.schema import coerce
from lvwlib.experiment.stages import BaseArtefacts, Prepared, base_for_seed, prepare, run_method
from lvwlib.paper.viz import set_theme
from lvwlib.store.paths import resolve
from lvwlib.store.records import RunRecord

# RunConfig sections a variant may change without touching the data, the features or the base model.
VARIANT_SECTIONS = ("lvw", "eval")


def read_params(params_file: str | Path | dict[str, Any]) -> dict[str, Any]:
    """The params mapping of a yaml path (relative to the project root) or the mapping itself."""
    if isinstance(params_file, dict):
        return params_file
    return load_params(resolve(params_file))


def read_analyses(params_file: str | Path | dict[str, Any]) -> AnalysesConfig:
    """The ``analyses:`` section of a params file (defaults for the keys it leaves out)."""
    return coerce(AnalysesConfig, read_params(params_file).get("analyses") or {})


def with_overrides(exp: Experiment, run_changes: dict[str, Any]) -> Experiment:
    """A copy of ``exp`` whose RunConfig has nested changes, e.g. ``{"lvw": {"topk_align": 3}}``."""
    return dataclasses.replace(exp, run=replace(exp.run, **run_changes))


class Session:
    """One dataset and seed: experiment, data, base model, trained models (lazily) and run record.

    ``prep`` and ``base`` are loaded on first use (``open(load=True)`` loads them at once);
    ``model(method)`` loads each trained model once. Sessions made by :meth:`with_seed` and
    :meth:`variant` share this one's data and keep no run record of their own.
    """

    def __init__(
        self, params: dict[str, Any], exp: Experiment, dataset: str | None, seed: int, out_dir: Path,
        progress: bool = True, prep: Prepared | None = None, base: BaseArtefacts | None = None,
    ) -> None:
        self.params = params
        self.exp = exp
        self.dataset = dataset
        self.seed = seed
        self.out_dir = out_dir
        self.progress = progress
        self.analyses = coerce(AnalysesConfig, params.get("analyses") or {})
        self._prep = prep
        self._base = base
        self._models: dict[str, TrainedModel] = {}
        self.extra: dict[str, Any] = {}  # written into the run record by finish
        self._record: RunRecord | None = None
        self._stack = ExitStack()

    # ------------------------------------------------------------------ data and models
    @property
    def prep(self) -> Prepared:
        """The dataset, backbone and cached trunk features."""
        if self._prep is None:
            if self.dataset is None:
                raise ValueError("this session has no dataset: open it with one to load data")
            self._prep = prepare(self.exp, progress=self.progress)
        return self._prep

    @property
    def base(self) -> BaseArtefacts:
        """The base model of this seed and its Grad-CAM maps (trained once, cached)."""
        if self._base is None:
            self._base = base_for_seed(self.prep, self.seed, progress=self.progress)
        return self._base

    def result(self, method: str) -> dict[str, Any]:
        """``method``'s Table 1 result for this seed (accuracy, iou, per_image_iou, ...); trains it if missing."""
        return run_method(self.prep, self.base, method, self.seed, progress=self.progress)

    def model(self, method: str, train: bool = True) -> TrainedModel:
        """The trained ``method`` of this seed (one handle for every method: explain, word maps, push sources).

        Args:
            train: train (and store) it when the cache has none; False raises
                :class:`~lvwlib.experiment.models.ModelNotCachedError` instead.
        """
        if method not in self._models:
            try:
                model = load_model(self.exp, self.exp.run.data.name, method, self.seed, prep=self.prep)
            except ModelNotCachedError:
                if not train:
                    raise
                self.result(method)  # trains, evaluates and stores the model
                model = load_model(self.exp, self.exp.run.data.name, method, self.seed, prep=self.prep)
            self._models[method] = model
        return self._models[method]

    def with_seed(self, seed: int) -> Session:
        """The same dataset (data shared, not reloaded) with the base model and models of ``seed``."""
        if seed == self.seed:
            return self
        return Session(self.params, self.exp, self.dataset, seed, self.out_dir, self.progress, self._prep)

    def variant(self, run_changes: dict[str, Any]) -> Session:
        """The same data and base model, with changed LVW or evaluation settings (own models, own cache keys).

        E.g. ``s.variant({"lvw": {"topk_align": 3}}).model("lvw")`` is LVW trained with k = 3.
        """
        bad = set(run_changes) - set(VARIANT_SECTIONS)
        if bad:
            raise ValueError(f"a variant may change {', '.join(VARIANT_SECTIONS)} only (the data and base "
                             f"model stay shared), not {', '.join(sorted(bad))}")
        exp = with_overrides(self.exp, run_changes)
        prep = dataclasses.replace(self.prep, exp=exp)
        return Session(self.params, exp, self.dataset, self.seed, self.out_dir, self.progress, prep, self.base)

    # ------------------------------------------------------------------ names
    @property
    def name(self) -> str | None:
        """The dataset's results name (:func:`lvwlib.experiment.names.results_name`), used in every table."""
        return results_name(self.dataset) if self.dataset is not None else None

    @property
    def class_names(self) -> list[str]:
        """Readable names of the training classes, in label order."""
        return [self.human(c) for c in range(self.prep.num_classes)]

    def human(self, cls: int | str, classes: list[str] | None = None) -> str:
        """Readable name of a class given by index (into ``classes``, default the training classes) or name."""
        if not isinstance(cls, str):
            cls = (classes or self.prep.bundle.classes)[int(cls)]
        return self.prep.bundle.human_names.get(cls, cls)

    # ------------------------------------------------------------------ the run record
    def start_record(self, name: str) -> None:
        """Start ``out_dir/run_<name>.json`` (config, environment, cache events, wall time from now)."""
        if self._record is not None:
            raise RuntimeError(f"this session already records {self._record.path}")
        config = self.exp.to_dict() if self.dataset is not None else {"params": self.params}
        self._record = self._stack.enter_context(RunRecord(self.out_dir, config, name=f"run_{name}.json"))

    def finish(self, extra: dict[str, Any] | None = None) -> Path | None:
        """Write the run record with :attr:`extra` and ``extra`` (what was computed); its path, or None without one."""
        record, self._record = self._record, None
        if record is None:
            return None
        record.extra = {**self.extra, **(extra or {})}
        self._stack.close()
        return record.path

    def __enter__(self) -> Session:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.finish()
        else:
            self._record = None
            self._stack.__exit__(exc_type, exc, tb)  # the record sees the error: a failed run writes none


def open(  # noqa: A001 - the session's verb, as io.open
    params_file: str | Path | dict[str, Any],
    dataset: str | None,
    seed: int = 0,
    *,
    results_dir: str | Path = "results",
    name: str | None = None,
    overrides: dict[str, Any] | None = None,
    progress: bool = True,
    load: bool = True,
) -> Session:
    """Open a session on ``dataset`` and ``seed`` of ``params_file``.

    Args:
        params_file: yaml under ``params/`` (relative to the project root), or its mapping.
        dataset: registry name or a folder of class folders; None for a session over
            several datasets or results only (no data, ``out_dir`` = ``results_dir``).
        results_dir: results root; this dataset's files go to ``results_dir/<results name>/``
            (:func:`lvwlib.experiment.names.results_name`), never inside the dataset.
        name: start the run record ``out_dir/run_<name>.json``; None: no record.
        overrides: nested RunConfig changes, e.g. ``{"data": {"holdout_classes": ["bar"]}}``
            (their own cache keys: models never mix with Table 1's).
        load: load the data, trunk features and base model now (printing the data summary);
            False loads them on first use.
    """
    params = read_params(params_file)
    source = None if isinstance(params_file, dict) else params_file
    exp = experiment_from_params(params, dataset, source=source)
    if overrides:
        exp = with_overrides(exp, overrides)
    root = resolve(results_dir)
    out_dir = root / results_name(dataset) if dataset is not None else root
    torch.set_num_threads(max(1, torch.get_num_threads()))
    set_theme()
    sess = Session(params, exp, dataset, seed, out_dir, progress)
    if name is not None:
        sess.start_record(name)
    if load and dataset is not None:
        print(sess.prep.bundle.summary())
        sess.base  # noqa: B018 - load (or train) it now, not in the middle of a later step
    return sess
