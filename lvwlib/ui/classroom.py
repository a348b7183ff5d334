"""Helpers of the classroom notebooks (notebooks/classroom): loading a lesson's models, checking answers."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from IPython.display import HTML, display

from lvwlib.core.config import load_params
from lvwlib.experiment.artefacts import TrainedModel, load_model
from lvwlib.experiment.pipeline import (
    BaseArtefacts,
    Experiment,
    Prepared,
    base_for_seed,
    experiment_from_params,
    prepare,
    resolve,
    run_method,
)


@dataclass
class Lesson:
    """What a lesson works with: data, base model, trained models and their Table 1 rows."""

    exp: Experiment
    prep: Prepared
    base: BaseArtefacts
    models: dict[str, TrainedModel] = field(default_factory=dict)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        """Human-readable class names."""
        return [self.prep.bundle.human_names.get(c, c) for c in self.prep.bundle.classes]


def setup(params_file: str, dataset: str, seed: int, methods: tuple[str, ...] = ()) -> Lesson:
    """Load (or, on a fresh clone, train) the data, the base model and ``methods``.

    Everything is cached: after ``make quick`` nothing trains here.
    """
    exp = experiment_from_params(load_params(resolve(params_file)), dataset)
    prep = prepare(exp, progress=False)
    base = base_for_seed(prep, seed, progress=False)
    lesson = Lesson(exp, prep, base)
    for method in methods:
        lesson.results[method] = run_method(prep, base, method, seed, progress=False)
        lesson.models[method] = load_model(exp, dataset, method, seed, prep=prep)
    return lesson


def check(answer: Any, expected: Any, tol: float = 1e-3, hint: str = "") -> bool:
    """Say whether ``answer`` is right (numbers within ``tol``, sequences element-wise).

    Prints (and returns) the verdict; an unanswered exercise (``None``) is not an error.
    """
    if answer is None:
        verdict, ok = "Not answered yet: replace None by your answer and run the cell again.", False
    else:
        ok = _same(answer, expected, tol)
        verdict = "Right!" if ok else f"Not yet. {hint}".strip()
    colour = "#1a7f37" if ok else "#9a6700"
    display(HTML(f"<b style='color:{colour}'>{verdict}</b>"))
    return ok


def _same(a: Any, b: Any, tol: float) -> bool:
    if hasattr(a, "tolist"):
        a = a.tolist()
    if hasattr(b, "tolist"):
        b = b.tolist()
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y, tol) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool):
        return bool(a) == bool(b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), abs_tol=tol)
    return str(a).strip().lower() == str(b).strip().lower()
