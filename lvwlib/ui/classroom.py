"""Helpers of the classroom notebooks (notebooks/classroom): checking answers against hidden values.

A lesson opens a :func:`lvwlib.ui.session.open` session like every notebook. Its exercise
cells call ``check("1.2", answer_2, s)``: the expected value is computed here (from the
lesson's session where it depends on the data), so the notebook never shows it above the
exercise; a wrong answer gets the exercise's hint.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from IPython.display import HTML, display

from lvwlib.ui.session import Session


def spread_indices(n: int, k: int) -> list[int]:
    """Up to ``k`` positions spread evenly over ``n`` items (the test images a lesson shows)."""
    return list(range(0, n, max(1, n // k)))[:k]


@dataclass(frozen=True)
class Exercise:
    """One exercise: how its answer is computed (from the lesson's session, or not), tolerance, hint."""

    expected: Callable[[Session | None], Any]
    tol: float = 1e-3  # numbers within tol are right; 0: exact
    hint: str = ""  # shown after a wrong answer


def _gradcam_by_hand(_: Session | None) -> list[list[float]]:
    a1, a2 = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    return torch.relu(2 * a1 - 1 * a2).tolist()


def _top_word(s: Session | None) -> int:
    s = _need(s)
    i = spread_indices(len(s.prep.test_labels), 6)[1]
    return int(s.model("lvw").word_scores(s.prep.test_feats[i : i + 1, 0])[0].argmax())


def _better_aligned(s: Session | None) -> str:
    s = _need(s)
    return max(("lvw", "lvw_noalign"), key=lambda n: s.result(n)["iou"])


def _need(s: Session | None) -> Session:
    if s is None:
        raise ValueError("this exercise depends on the lesson's data: pass its session, check(id, answer, s)")
    return s


EXERCISES: dict[str, Exercise] = {
    # Lesson 1: what a CNN looks at
    "1.1": Exercise(_gradcam_by_hand, hint="Compute 2*A1 - A2 cell by cell, then set negative cells to 0."),
    "1.2": Exercise(lambda _: math.log((0 + 1) / (0 + 1e-4)), hint="Put d = 0 into log((d + 1) / (d + 0.0001))."),
    "1.3": Exercise(_top_word, tol=0, hint="Take the argmax of the scores of that one image."),
    # Lesson 2: training LVW and alignment
    "2.1": Exercise(lambda _: 0.0, tol=1e-4, hint="Push copies the patch's feature vector into the word."),
    "2.2": Exercise(lambda s: _need(s).model("lvw").words.num_words, tol=0,
                    hint="M = number of classes x words per class."),
    "2.3": Exercise(_better_aligned, hint="Compare s.result(name)['iou'] of the two models."),
    # Lesson 3: measuring explanations
    "3.1": Exercise(lambda _: 1 / 3, hint="Count the pixels in both masks and the pixels in at least one."),
    "3.2": Exercise(lambda _: (0.9 * 0.9) / (1 - 0.1 * 0.1), tol=0.01,
                    hint="IoU = overlap / union, with the overlap and the union you estimated."),
    "3.3": Exercise(lambda _: True, hint="With |A| = |B| = n/2 and overlap i: union n - i; "
                                         "the complements overlap on n - (n - i) = i."),
}


def expected(exercise: str, session: Session | None = None) -> Any:
    """The hidden answer of ``exercise`` (for tests and teachers; the notebooks never print it)."""
    if exercise not in EXERCISES:
        raise KeyError(f"no exercise {exercise!r}; known: {', '.join(EXERCISES)}")
    return EXERCISES[exercise].expected(session)


def is_right(exercise: str, answer: Any, session: Session | None = None) -> bool:
    """Whether ``answer`` is right: numbers within the exercise's tolerance, sequences element-wise."""
    return answer is not None and _same(answer, expected(exercise, session), EXERCISES[exercise].tol)


def check(exercise: str, answer: Any, session: Session | None = None) -> bool:
    """Say whether ``answer`` to ``exercise`` is right; on a wrong answer give the exercise's hint.

    Prints (and returns) the verdict; an unanswered exercise (``None``) is not an error.
    """
    if answer is None:
        verdict, ok = "Not answered yet: replace None by your answer and run the cell again.", False
    else:
        ok = is_right(exercise, answer, session)
        verdict = "Right!" if ok else f"Not yet. {EXERCISES[exercise].hint}".strip()
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
