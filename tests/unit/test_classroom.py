"""Classroom checks compare against hidden values: right answers pass (within tolerance), wrong
ones fail, and no lesson shows an expected answer in its cells."""

from __future__ import annotations

import json
import re

import pytest

from lvwlib.store.paths import project_root
from lvwlib.ui.classroom import EXERCISES, check, expected, is_right

LESSONS = sorted((project_root() / "notebooks" / "classroom").glob("*.ipynb"))
# the data-independent answers, as a lesson could have printed them
SHOWN = {
    "1.1": ["[[2, 0], [0, 2]]", "[[2.0, 0.0], [0.0, 2.0]]"],
    "1.2": ["9.21", "1 / 1e-4", "1 / 0.0001"],
    "3.1": ["1 / 3", "0.333"],
    "3.2": ["0.81 / 0.99", "0.818"],
}


@pytest.mark.parametrize(("exercise", "right", "wrong"), [
    ("1.1", [[2, 0], [0, 2]], [[2, -1], [-1, 2]]),
    ("1.2", 9.2103, 9.0),
    ("2.1", 0.00005, 0.5),
    ("3.1", 0.3333, 0.5),
    ("3.2", 0.82, 0.9),
    ("3.3", True, False),
])
def test_right_answer_passes_wrong_fails(exercise, right, wrong):
    assert is_right(exercise, right) and not is_right(exercise, wrong)
    assert check(exercise, right) and not check(exercise, wrong) and not check(exercise, None)


def test_tolerance_is_the_exercises():
    assert is_right("3.2", expected("3.2") + 0.009) and not is_right("3.2", expected("3.2") + 0.011)
    assert is_right("1.1", [[2.0004, 0], [0, 2]]) and not is_right("1.1", [[2, 0], [0]])


def test_data_dependent_exercises_need_the_session():
    with pytest.raises(ValueError, match="pass its session"):
        expected("1.3")
    with pytest.raises(KeyError, match="no exercise"):
        expected("9.9")


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda p: p.stem)
def test_lessons_never_show_the_answer(lesson):
    cells = json.loads(lesson.read_text())["cells"]
    source = "\n".join("".join(c["source"]) for c in cells)
    for exercise, forms in SHOWN.items():
        for form in forms:
            assert form not in source, f"{lesson.name} shows the answer of exercise {exercise}: {form!r}"
    checks = [line for c in cells if c["cell_type"] == "code" for line in "".join(c["source"]).splitlines()
              if "check(" in line and "import" not in line]
    assert checks, "a lesson without checks"
    for line in checks:  # only an exercise id and the learner's (or the solution's) variable
        assert re.fullmatch(r'check\("\d\.\d", (answer|solution)_\d(, s)?\)', line.strip()), line
        assert re.search(r'"(\d\.\d)"', line).group(1) in EXERCISES
