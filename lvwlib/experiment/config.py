"""An experiment's configuration, read from a params yaml: the one params reader.

:func:`load_experiment` (a file) and :func:`experiment_from_params` (a dict) check
the params first (:mod:`lvwlib.experiment.schema`), merge a dataset's overrides
(``datasets: {name: {...}}``) and build an :class:`Experiment`: the shared
:class:`~lvwlib.core.config.RunConfig`, each registered method's params section,
the seeds and the Table 1 rows to run.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lvwlib.core.config import RunConfig, load_params, to_dict
from lvwlib.experiment.schema import ConfigError, check_params, coerce, coerce_partial
from lvwlib.methods import registry
from lvwlib.store.paths import resolve


@dataclass(frozen=True)
class Experiment:
    """A run's whole configuration.

    ``configs`` holds each registered method's params section by method name (a
    config dataclass, or a dict of overrides for a method with ``partial_config``);
    methods without a section have no entry.
    """

    run: RunConfig = field(default_factory=RunConfig)
    configs: dict[str, Any] = field(default_factory=dict)
    seeds: tuple[int, ...] = (0,)  # every Table 1 cell is run once per seed
    methods: tuple[str, ...] = field(default_factory=registry.names)  # rows of Table 1 to run (registered names)

    @property
    def dataset(self) -> str:
        return self.run.data.name

    def config(self, method: str) -> Any:
        """The params section of ``method`` (its defaults when the file has none)."""
        if method not in self.configs:
            raise ValueError(f"method {method!r} has no params section; sections: {', '.join(self.configs)}")
        return self.configs[method]

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


def method_configs(params: dict[str, Any]) -> dict[str, Any]:
    """Every registered method's section of ``params`` (coerced; defaults when absent)."""
    configs: dict[str, Any] = {}
    for name in registry.names():
        method = registry.get(name)
        if method.config is None:
            continue
        values = params.get(name) or {}
        configs[name] = dict(coerce_partial(method.config, values)) if method.partial_config else coerce(
            method.config, values)
    return configs


def experiment_from_params(
    params: dict[str, Any], dataset: str | None = None, source: str | Path | None = None
) -> Experiment:
    """Build an :class:`Experiment` from a params yaml dict, checked first (:mod:`lvwlib.experiment.schema`).

    ``datasets: {name: {...}}`` in the yaml holds per-dataset overrides, merged
    over the top level when ``dataset`` is given (which also sets data.name).
    ``source`` (the file the dict came from) is named in errors.

    Raises:
        ConfigError: unknown keys, wrong types, values outside their set or
            impossible combinations, all listed in one message.
    """
    check_params(params, source)
    params = copy.deepcopy(params)
    per_dataset = params.pop("datasets", {}) or {}
    params.pop("cells", None)  # how cells are run (lvwlib.core.config.CellsConfig): never part of a result
    params.pop("analyses", None)  # the analyses' settings (AnalysesConfig): read by the notebooks, not a result
    if dataset is not None:
        params = deep_merge(params, per_dataset.get(dataset, {}))
        params.setdefault("data", {})["name"] = dataset
    run_keys = {f.name for f in dataclasses.fields(RunConfig)}
    run = coerce(RunConfig, {k: v for k, v in params.items() if k in run_keys})
    sections = {name for name in registry.names() if registry.get(name).config is not None}
    unknown = set(params) - run_keys - sections - {"seeds", "methods"}
    if unknown:
        raise ValueError(f"unknown parameter section(s): {', '.join(sorted(unknown))}")
    methods = tuple(params.get("methods", registry.names()))
    for name in methods:
        registry.get(name)  # ValueError naming the known methods
    return Experiment(run=run, configs=method_configs(params), seeds=tuple(params.get("seeds", (0,))), methods=methods)


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` merged in: nested mappings key by key, anything else replaced."""
    out = dict(base)
    for key, value in over.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_experiment(params_file: str | Path, dataset: str | None = None) -> Experiment:
    """Read, check and build the :class:`Experiment` of a params yaml (relative to the project).

    Every ValueError names the file (the schema's ConfigError does already).
    """
    path = resolve(params_file)
    try:
        return experiment_from_params(load_params(path), dataset, source=params_file)
    except ConfigError:
        raise
    except ValueError as err:
        raise ValueError(f"{params_file}: {err}") from err
