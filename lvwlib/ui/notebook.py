"""One setup call for the analysis notebooks (06-10): parameters, theme, data, run record.

    session = setup(params_file, dataset, results_dir, name="figure2")
    ... session.exp, session.prep, session.out_dir ...
    session.finish({"summary": ...})

``finish`` writes ``<out_dir>/run_<name>.json`` (config, git commit, wall time),
so notebooks never call ``__enter__`` / ``__exit__`` themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import seaborn as sns
import torch

from lvwlib.core.config import load_params
from lvwlib.experiment.names import results_name
from lvwlib.experiment.pipeline import (
    Experiment,
    Prepared,
    experiment_from_params,
    prepare,
    resolve,
)
from lvwlib.paper.analyses import with_overrides
from lvwlib.paper.viz import compact_inline_figures
from lvwlib.store.records import RunRecord

THEME = {"style": "whitegrid", "context": "notebook"}  # the one seaborn theme of every figure


def set_theme() -> None:
    """The seaborn theme and compact (JPEG) inline figures, set once per notebook."""
    sns.set_theme(**THEME)
    compact_inline_figures()


@dataclass
class Session:
    """What a notebook works with: the experiment, its prepared data and where results go."""

    exp: Experiment
    prep: Prepared | None
    out_dir: Path  # results_dir/<dataset> (or results_dir when no dataset)
    record: RunRecord
    extra: dict[str, Any] = field(default_factory=dict)

    def human(self, cls: int | str, classes: list[str] | None = None) -> str:
        """Readable name of a class given by index (into ``classes``, default the training classes) or name."""
        if isinstance(cls, int) or hasattr(cls, "__index__"):
            cls = (classes or self.prep.bundle.classes)[int(cls)]
        return self.prep.bundle.human_names.get(cls, cls)

    def finish(self, extra: dict[str, Any] | None = None) -> None:
        """Write the run record (config, environment, wall time, ``extra``)."""
        self.record.extra = {**self.extra, **(extra or {})}
        self.record.__exit__(None, None, None)


def setup(
    params_file: str,
    dataset: str | None,
    results_dir: str,
    name: str,
    overrides: dict[str, Any] | None = None,
    progress: bool = True,
    load: bool = True,
) -> Session:
    """Theme, experiment (with RunConfig ``overrides``), prepared data and a started run record.

    Args:
        params_file: yaml under ``params/`` (relative to the project root).
        dataset: dataset name; None for notebooks that only read results.
        results_dir: results root; figures go to ``results_dir/<dataset>/``.
        name: the record is ``run_<name>.json``.
        overrides: nested RunConfig changes, e.g. ``{"data": {"holdout_classes": ["bar"]}}``.
        load: False skips loading data and features (``prep`` is None).
    """
    set_theme()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    params = load_params(resolve(params_file))
    exp = experiment_from_params(params, dataset)
    if overrides:
        exp = with_overrides(exp, overrides)
    # named by lvwlib.experiment.names: a folder dataset's absolute path would put results INTO the folder
    out_dir = resolve(results_dir) / results_name(dataset) if dataset is not None else resolve(results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    record = RunRecord(out_dir, exp.to_dict(), name=f"run_{name}.json").__enter__()
    prep = prepare(exp, progress=progress) if load and dataset is not None else None
    if prep is not None:
        print(prep.bundle.summary())
    return Session(exp, prep, out_dir, record)
