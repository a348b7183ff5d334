"""make reproduce's defaults: Table 1's datasets in the paper's order, and the analyses they run."""

from __future__ import annotations

import re

from lvwlib.experiment.reproduce import TABLE1_DATASETS, Run, planned_analyses, source_notebook
from lvwlib.paper.tables import PAPER_COLUMNS
from lvwlib.store.paths import resolve


def test_default_datasets_are_table1s_columns_in_the_papers_order():
    assert TABLE1_DATASETS == ("imagenette", "flowers102", "imagewoof", "food101_10", "animals22")
    assert [d for _, d in PAPER_COLUMNS if d is not None] == list(TABLE1_DATASETS)  # Pets: no offline data
    makefile = resolve("Makefile").read_text()
    assert re.search(r"^DATASETS \?= (.*)$", makefile, re.M).group(1).split() == list(TABLE1_DATASETS)


def test_default_params_run_figure5_per_case_and_figure2_on_every_dataset():
    run = Run(resolve("params/default.yaml"), TABLE1_DATASETS, resolve("runs/unused"))
    plan = {name: parameters for name, parameters, _ in planned_analyses(run)}
    assert list(plan) == ["06_figure2", "07_k_sweep", "08_visual_words", "09_unseen_animals22", "09_unseen_imagewoof",
                          "11_faithfulness"]
    assert plan["06_figure2"]["datasets"] == list(TABLE1_DATASETS)
    assert plan["07_k_sweep"]["dataset"] == "imagewoof" and plan["08_visual_words"]["dataset"] == "imagenette"
    assert plan["09_unseen_animals22"]["dataset"] == "animals22"
    assert plan["09_unseen_animals22"]["heldout_classes"] == ["wolf", "bison"]
    assert plan["09_unseen_imagewoof"]["heldout_classes"] == ["n02089973", "n02096294"]
    assert source_notebook("09_unseen_animals22") == "09_unseen" and source_notebook("07_k_sweep") == "07_k_sweep"
    # the held-out classes are class folders of the shared copy (where it is linked)
    train = resolve("data/animals22/train")
    if train.is_dir():
        assert {"wolf", "bison", "dog", "cow"} <= {p.name for p in train.iterdir()}


def test_a_run_without_a_cases_dataset_skips_that_case_only():
    run = Run(resolve("params/default.yaml"), ("imagewoof",), resolve("runs/unused"))
    plan = {name: (parameters, why) for name, parameters, why in planned_analyses(run)}
    assert plan["09_unseen_animals22"][0] is None
    assert "'animals22' (params analyses.unseen) is not among this run's datasets" in plan["09_unseen_animals22"][1]
    assert plan["09_unseen_imagewoof"][0]["dataset"] == "imagewoof"


def test_notebooks_start_longest_first_and_share_the_cores(monkeypatch):
    from lvwlib.experiment import reproduce as rp

    jobs = [rp.NotebookJob(name, name, {}) for name in ("01_base_model", "11_faithfulness", "unknown", "07_k_sweep")]
    # 11 (11.5 min) and 07 (5.6) first, an unknown notebook (1 min) before 01 (0.05)
    assert [job.notebook for job in rp.longest_first(jobs)] == ["11_faithfulness", "07_k_sweep", "unknown",
                                                                "01_base_model"]
    monkeypatch.setattr(rp, "usable_cores", lambda: 4)
    assert rp.notebook_workers(None, 10) == (4, 1)  # one per core, one thread each
    assert rp.notebook_workers(2, 10) == (2, 2)  # the cores shared
    assert rp.notebook_workers(0, 3) == (3, 1)  # never more workers than notebooks
    assert rp.notebook_workers(1, 10) == (1, 4)
