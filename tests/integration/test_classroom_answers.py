"""The classroom's data-dependent exercises: the hidden answer is the one the lesson's solution computes."""

from __future__ import annotations

import pytest

from lvwlib.core.config import load_params
from lvwlib.store.paths import resolve
from lvwlib.ui import session
from lvwlib.ui.classroom import expected, is_right, spread_indices


@pytest.fixture(scope="module")
def s(tmp_path_factory):
    params = load_params(resolve("params/tiny.yaml"))
    params["cache_dir"] = str(tmp_path_factory.mktemp("cache"))
    return session.open(params, "synthetic", 0, progress=False)


def test_lesson_answers_from_the_session(s):
    i = spread_indices(len(s.prep.test_labels), 6)[1]
    scores = s.model("lvw").word_scores(s.prep.test_feats[i : i + 1, 0])[0]
    assert is_right("1.3", int(scores.argmax()), s)
    assert not is_right("1.3", (int(scores.argmax()) + 1) % len(scores), s)
    words = s.exp.run.lvw.words_per_class * s.prep.num_classes
    assert expected("2.2", s) == words and is_right("2.2", words, s) and not is_right("2.2", words + 1, s)
    better = max(("lvw", "lvw_noalign"), key=lambda n: s.result(n)["iou"])
    other = "lvw_noalign" if better == "lvw" else "lvw"
    assert is_right("2.3", better, s) and is_right("2.3", better.upper(), s) and not is_right("2.3", other, s)
