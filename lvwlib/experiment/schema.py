"""Parameter files checked at load, before any computation (pydantic).

A params yaml (``params/*.yaml``) is a mapping of sections: the fields of
:class:`~lvwlib.core.config.RunConfig` (``data``, ``backbone``, ``base``, ``lvw``,
``eval``, ``cache_dir``, ...), each registered method's section (its
:attr:`~lvwlib.methods.registry.Method.config`: ``prototree``, ``protopshare``,
``srae``, ``protopnet`` (LVWConfig overrides), ...), ``seeds``, ``methods`` (any
registered method names), ``cells`` (how the runner runs, never a result),
``analyses`` and ``datasets`` (per-dataset overrides of any of these).

:func:`check_params` validates all of it against the config dataclasses with
pydantic (``extra="forbid"``; lax mode, so ``1e-4`` read by yaml as a string is
the number 0.0001 but ``"ten"`` is an error), then checks combinations that no
single field can (a tail that does not exist for the backbone, ...). Every
problem is reported in ONE :class:`ConfigError` whose lines name the file and the
dotted key, with a "did you mean" for misspelt keys.
"""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path
from typing import Any, Literal, get_type_hints

from pydantic import ConfigDict, TypeAdapter, ValidationError

from lvwlib.core.config import (
    AnalysesConfig,
    BackboneConfig,
    BaseConfig,
    CellsConfig,
    DataConfig,
    EvalConfig,
    LVWConfig,
    RunConfig,
    UnseenCase,
    load_params,
)
from lvwlib.methods import registry


class ConfigError(ValueError):
    """A params file (or dict) that does not match the schema; the message names file and key."""


# Sections of a params file beside RunConfig's own fields and the methods' sections.
EXTRA_SECTIONS: dict[str, Any] = {
    "analyses": AnalysesConfig,  # settings of Figures 2-5 (never part of a cached result)
    "cells": CellsConfig,  # how the runner runs cells (never part of a result)
}

_FORBID = ConfigDict(extra="forbid")
for _cls in (DataConfig, BackboneConfig, BaseConfig, LVWConfig, EvalConfig, RunConfig, AnalysesConfig, UnseenCase,
             CellsConfig):
    _cls.__pydantic_config__ = _FORBID  # type: ignore[attr-defined]


def _section_types() -> dict[str, Any]:
    """Top-level key -> expected type (a dataclass, or a plain annotation), registered methods included."""
    hints = get_type_hints(RunConfig, include_extras=True)
    types: dict[str, Any] = {f.name: hints[f.name] for f in dataclasses.fields(RunConfig)}
    types.update(EXTRA_SECTIONS)
    for name in registry.names():
        config = registry.get(name).config
        if config is not None:
            config.__pydantic_config__ = _FORBID  # unknown keys are errors in every section
            types[name] = config  # a partial_config section gives some of its fields: all are optional
    types["seeds"] = list[int]
    types["methods"] = list[Literal[registry.names()]]  # type: ignore[valid-type]
    return types


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    """The valid keys at ``loc`` (a path of keys) of a params mapping."""
    types: Any = _section_types()
    path = list(loc)
    if path[:1] == ["datasets"]:
        path = path[2:]  # datasets.<name>.<section>...
    if not path:
        return sorted(types) + ([] if loc[:1] == ("datasets",) else ["datasets"])
    current = types.get(path[0])
    for key in path[1:]:
        if not dataclasses.is_dataclass(current):
            return []
        current = get_type_hints(current, include_extras=True).get(key)
    if dataclasses.is_dataclass(current):
        return [f.name for f in dataclasses.fields(current)]
    return []


def _did_you_mean(key: str, loc: tuple[Any, ...]) -> str:
    known = _known_keys(loc)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"unknown key{hint} (known: {', '.join(known)})" if known else f"unknown key{hint}"


def _check_mapping(values: dict[str, Any], prefix: tuple[Any, ...], problems: list[str]) -> None:
    """Validate one mapping of sections (the top level or one ``datasets.<name>`` entry)."""
    types = _section_types()
    for key, value in values.items():
        loc = (*prefix, key)
        if key == "datasets" and not prefix:
            if not isinstance(value, dict):
                problems.append(f"datasets: expected a mapping of dataset name -> overrides, got {value!r}")
                continue
            for name, over in value.items():
                if not isinstance(over, dict):
                    problems.append(f"datasets.{name}: expected a mapping, got {over!r}")
                    continue
                _check_mapping(over, ("datasets", name), problems)
            continue
        if key not in types:
            problems.append(f"{_dotted(loc)}: {_did_you_mean(key, prefix)}")
            continue
        _validate(types[key], value, loc, problems)


def _validate(expected: Any, value: Any, loc: tuple[Any, ...], problems: list[str]) -> None:
    """Append a line to ``problems`` for each way ``value`` fails to be an ``expected``."""
    if dataclasses.is_dataclass(expected):
        if not isinstance(value, dict):
            problems.append(f"{_dotted(loc)}: expected a mapping of {expected.__name__} fields, got {value!r}")
            return
    try:
        TypeAdapter(expected).validate_python(value)
    except ValidationError as err:
        for e in err.errors():
            sub = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith(("function-", "lax-"))))
            full = (*loc, *sub)
            if e["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
                problems.append(f"{_dotted(full)}: {_did_you_mean(str(full[-1]), full[:-1])}")
            else:
                problems.append(f"{_dotted(full)}: {e['msg']} (got {e.get('input')!r})")
    except (TypeError, ValueError) as err:  # a dataclass __post_init__ check
        problems.append(f"{_dotted(loc)}: {err}")


def _dotted(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc)


def _combinations(values: dict[str, Any], prefix: str, problems: list[str]) -> None:
    """Checks across fields, on one merged mapping (top level + a dataset's overrides)."""
    from lvwlib.backbones.split import TAIL_SPLITS

    backbone = {**dataclasses.asdict(BackboneConfig()), **(values.get("backbone") or {})}
    name, tail = backbone.get("name"), backbone.get("tail")
    aliases = {"resnet34": {"head"}}
    if name in TAIL_SPLITS and tail not in TAIL_SPLITS[name] and tail not in aliases.get(name, set()):
        problems.append(
            f"{prefix}backbone.tail: {tail!r} is not a tail of {name} (valid: {', '.join(TAIL_SPLITS[name])})"
        )
    lvw = values.get("lvw") or {}
    if float(lvw.get("lr_decay_every", 0) or 0) > 0 and not 0 < float(lvw.get("lr_decay", 0.1)) <= 1:
        problems.append(f"{prefix}lvw.lr_decay: must be in (0, 1] when lr_decay_every > 0")
    seeds = values.get("seeds")
    if seeds is not None and isinstance(seeds, list) and not seeds:
        problems.append(f"{prefix}seeds: at least one seed is needed")


def check_params(params: dict[str, Any], source: str | Path | None = None) -> None:
    """Raise :class:`ConfigError` listing every problem of ``params``; return None if valid.

    Args:
        params: the mapping read from a params yaml.
        source: the file it came from, named in every line of the error.
    """
    where = str(source) if source is not None else "params"
    problems: list[str] = []
    if not isinstance(params, dict):
        raise ConfigError(f"{where}: expected a mapping at the top level, got {type(params).__name__}")
    _check_mapping(params, (), problems)
    if not problems:
        top = {k: v for k, v in params.items() if k != "datasets"}
        _combinations(top, "", problems)
        for name, over in (params.get("datasets") or {}).items():
            merged = _merge(top, over)
            _combinations(merged, f"datasets.{name}.", problems)
    if problems:
        lines = "\n".join(f"  {where}: {p}" for p in problems)
        raise ConfigError(f"invalid parameters in {where}:\n{lines}")


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def coerce(cls: Any, values: dict[str, Any]) -> Any:
    """Build dataclass ``cls`` from ``values`` with pydantic's conversions (``"1e-4"`` -> 1e-4)."""
    return TypeAdapter(cls).validate_python(values)


def coerce_partial(cls: Any, values: dict[str, Any]) -> dict[str, Any]:
    """The given fields of ``cls`` only (overrides), converted as :func:`coerce` does."""
    full = dataclasses.asdict(coerce(cls, values))
    return {k: (tuple(full[k]) if isinstance(full[k], list) else full[k]) for k in values}


def load_checked_params(path: str | Path) -> dict[str, Any]:
    """Read a params yaml and check it (see :func:`check_params`); the raw mapping."""
    params = load_params(path)
    check_params(params, path)
    return params


def main(argv: list[str] | None = None) -> int:
    """``python -m lvwlib schema FILE...``: check params files, print OK or the error."""
    import sys

    paths = argv if argv is not None else sys.argv[1:]
    status = 0
    for path in paths:
        try:
            load_checked_params(path)
            print(f"{path}: OK")
        except (ConfigError, FileNotFoundError) as err:
            print(err, file=sys.stderr)
            status = 2
    return status
