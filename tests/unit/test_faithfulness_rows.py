"""Known answers for notebook 11's rows: the batched whole-model curves and the border diagnostic."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from lvwlib.core.config import BackboneConfig
from lvwlib.core.faithfulness import curve_auc, perturbation_curve
from lvwlib.core.push import WordSource
from lvwlib.paper.border import border_row, summary_markdown
from lvwlib.paper.faithfulness import Perturbed, subset_indices

S = 16


def _region() -> torch.Tensor:
    region = torch.zeros(S, S)
    region[3:9, 5:12] = 1.0
    return region


def _trunk(images: torch.Tensor) -> torch.Tensor:
    """A 'trunk' that passes the images on: [N, 3, S, S] -> the same (features = pixels)."""
    return images.clone()


def _head(region: torch.Tensor):
    """Logits of 2 classes decided by the brightness inside ``region`` alone."""

    def head(feats: torch.Tensor) -> torch.Tensor:
        inside = (feats.mean(dim=1) * region).sum(dim=(1, 2)) / region.sum()
        p1 = torch.sigmoid(12 * (inside - 0.5))
        return torch.log(torch.stack([1 - p1, p1], dim=1))

    return head


def _images() -> torch.Tensor:
    torch.manual_seed(0)
    images = torch.rand(3, 3, S, S) * 0.3
    images[:, :, 3:9, 5:12] = 1.0
    return images


def test_batched_curves_equal_the_reference_curves() -> None:
    images, region = _images(), _region()
    head = _head(region)
    sal = torch.rand(3, S, S, generator=torch.Generator().manual_seed(1))
    target = torch.ones(3, dtype=torch.long)
    p = Perturbed(_trunk, images, steps=5, batch_size=4)
    ours = p.curves(head, p.interior(sal), target)
    for mode in ("deletion", "insertion"):
        ref = perturbation_curve(lambda x: torch.softmax(head(x), 1), images, sal, target, mode, steps=5)
        torch.testing.assert_close(ours[mode], ref)


def test_the_deciding_region_beats_its_complement_through_the_whole_model() -> None:
    images, region = _images(), _region()
    p = Perturbed(_trunk, images, steps=8)
    head, target = _head(region), torch.ones(3, dtype=torch.long)
    good = p.curves(head, p.interior(region.expand(3, S, S)), target)
    bad = p.curves(head, p.interior((1 - region).expand(3, S, S)), target)
    assert (curve_auc(good["deletion"]) < curve_auc(bad["deletion"])).all()
    assert (curve_auc(good["insertion"]) > curve_auc(bad["insertion"])).all()


def test_subset_is_stratified_seeded_and_sorted() -> None:
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    idx = subset_indices(labels, 3, seed=0)
    assert sorted(labels[idx].tolist()) == [0, 1, 2]
    assert idx.tolist() == sorted(idx.tolist())
    assert torch.equal(idx, subset_indices(labels, 3, seed=0))
    assert len(subset_indices(labels, 100, seed=0)) == 9


def test_border_row_of_maps_peaking_on_the_border() -> None:
    maps = torch.zeros(4, 2, 7, 7)
    maps[:, 0, 0, 3] = 1.0
    maps[:, 1, 6, 6] = 1.0
    cams = torch.rand(4, 7, 7, generator=torch.Generator().manual_seed(0))
    push = [WordSource(image=0, row=0, col=0), WordSource(image=1, row=3, col=3)]
    row, mean = border_row(maps, cams, 50.0, 28, push)
    assert row["peak_border"] == 1.0
    assert row["word_border"] == pytest.approx(0.5)
    assert row["chance"] == pytest.approx(24 / 49)
    assert mean.shape == (7, 7) and mean[0, 3] == pytest.approx(1.0, abs=1e-6)
    # every image's map equals the mean map: nothing is left after subtracting it
    assert 0.0 <= row["iou_centred"] <= 1.0 and 0.0 <= row["iou_grid"] <= 1.0
    no_words, _ = border_row(maps, cams, 50.0, 28, None)
    assert no_words["word_border"] != no_words["word_border"]  # nan


def test_border_table_markdown_has_every_method() -> None:
    rows = pd.DataFrame([{"dataset": "d", "seed": s, "stage": "before trunk change", "method": m,
                          "word_border": 0.5, "peak_border": 0.6, "chance": 24 / 49, "iou_grid": 0.3,
                          "iou_centred": 0.2} for s in (0, 1) for m in ("LVW", "ProtoPNet")])
    md = summary_markdown(rows)
    assert "LVW" in md and "ProtoPNet" in md and "0.500 ± 0.000" in md


def _per_image(better: float) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for seed in (0, 1, 2):
        for image in range(8):
            rand_d, rand_i = 0.5 + 0.05 * rng.standard_normal(2)
            rows.append({"dataset": "d", "seed": seed, "row": "LVW", "image": image,
                         "deletion": rand_d - better + 0.01 * rng.standard_normal(),
                         "insertion": rand_i + better + 0.01 * rng.standard_normal(),
                         "random_deletion": rand_d, "random_insertion": rand_i})
            rows.append({"dataset": "d", "seed": seed, "row": "Random map", "image": image, "deletion": rand_d,
                         "insertion": rand_i, "random_deletion": np.nan, "random_insertion": np.nan})
    return pd.DataFrame(rows)


def test_faithful_claim_passes_a_clearly_better_map_and_not_an_equal_one() -> None:
    from lvwlib.paper.claims import FAIL, INCONCLUSIVE, PASS, claim_faithful

    assert [c.outcome for c in claim_faithful(_per_image(0.2)).cases] == [PASS]  # the random row is no case
    assert claim_faithful(_per_image(0.0)).cases[0].outcome in (INCONCLUSIVE, FAIL, PASS)
    assert claim_faithful(_per_image(-0.2)).cases[0].outcome == FAIL
    assert claim_faithful(None).verdict == "not measured"


def test_report_shows_each_border_stage_and_the_faithfulness_table(tmp_path) -> None:
    from lvwlib.paper.report import read_results, report_markdown

    (tmp_path / "d").mkdir()
    for stage in ("before trunk change", "after trunk change"):
        slug = stage.replace(" ", "_")
        pd.DataFrame([{"dataset": "d", "seed": 0, "stage": stage, "method": "LVW", "word_border": 0.4,
                       "peak_border": 0.5, "chance": 24 / 49, "iou_grid": 0.3, "iou_centred": 0.25}]).to_csv(
            tmp_path / f"border_diagnostic_{slug}_seeds.csv", index=False)
    _per_image(0.2).to_csv(tmp_path / "faithfulness_images.csv", index=False)
    results = read_results(tmp_path)
    md = report_markdown(results, pd.DataFrame([{"claim": "x"}]))
    assert "### Border diagnostic: before trunk change" in md and "### Border diagnostic: after trunk change" in md
    assert "### Deletion / insertion faithfulness" in md and "Random map" in md


def _trunk_rows() -> pd.DataFrame:
    """Trunk-calibration rows as `calibrate` writes them: 2 seeds x 2 variants x (base, LVW w/o alignment)."""
    rows = []
    for seed in (0, 1):
        for variant, peak in (("zeros", 0.9), ("reflect", 0.5)):
            for method, word in (("base", np.nan), ("lvw_noalign", peak - 0.1)):
                rows.append({"dataset": "d", "variant": variant, "method": method, "seed": seed,
                             "val_accuracy": 0.8 + 0.02 * seed, "val_iou": 0.3, "base_val_accuracy": 0.8,
                             "gap": 0.0, "wall_s": 1.0, "word_border": word, "peak_border": peak,
                             "chance": 24 / 49})
    return pd.DataFrame(rows)


def test_the_chosen_variant_is_the_one_whose_overrides_are_the_run_backbone() -> None:
    from lvwlib.core.config import load_params, to_dict
    from lvwlib.paper.border import chosen_variant
    from lvwlib.store.paths import resolve

    variants = load_params(resolve("params/calibration_trunk.yaml"))["variants"]
    for border in ("zeros", "reflect", "context"):
        assert chosen_variant(variants, to_dict(BackboneConfig(border=border))) == border
    assert chosen_variant(variants, to_dict(BackboneConfig(tail="block6"))) == "block6"  # the most specific
    assert chosen_variant(variants, to_dict(BackboneConfig(tail="block6", border="reflect"))) is None
    assert chosen_variant({"a": {"lvw": {"beta_align": 0}}}, to_dict(BackboneConfig())) is None


def test_report_shows_the_trunk_calibration_before_and_after_on_validation(tmp_path) -> None:
    from lvwlib.paper.border import TRUNK_CALIBRATION, calibration_summary
    from lvwlib.paper.report import read_results, report_markdown

    (tmp_path / "d").mkdir()
    md = report_markdown(read_results(tmp_path), pd.DataFrame([{"claim": "x"}]))
    assert "before / after the trunk change" not in md  # not run: today's sections only
    folder = tmp_path / TRUNK_CALIBRATION
    folder.mkdir(parents=True)
    _trunk_rows().to_csv(folder / "calibration_d.csv", index=False)
    pd.DataFrame([{"dataset": "d", "variant": "x", "method": "lvw", "seed": 0}]).to_csv(
        folder / "calibration_old.csv", index=False)  # recorded before the border diagnostic: left out
    results = read_results(tmp_path)
    assert len(results.trunk_calibration) == 8
    # a later run in a subfolder: its new rows join, a row measured again (base, seed 0) counts once
    later = _trunk_rows()
    later = later[(later["variant"] == "zeros") & (later["seed"] == 0)].assign(val_accuracy=0.5)
    (folder / "seed3").mkdir()
    pd.concat([later, later[later["method"] == "lvw_noalign"].assign(seed=3)]).to_csv(
        folder / "seed3" / "calibration_d.csv", index=False)
    joined = read_results(tmp_path).trunk_calibration
    assert len(joined) == 9 and joined[joined["seed"] == 0]["val_accuracy"].tolist() == pytest.approx([0.8] * 4)
    (folder / "seed3" / "calibration_d.csv").unlink()
    summary = calibration_summary(results.trunk_calibration)
    assert list(summary["method"]) == ["base", "base", "lvw_noalign", "lvw_noalign"]  # base first, file order
    assert list(summary["variant"]) == ["zeros", "reflect"] * 2 and (summary["seeds"] == 2).all()
    assert summary["val_accuracy"].tolist() == pytest.approx([0.81] * 4)
    md = report_markdown(results, pd.DataFrame([{"claim": "x"}]), backbone=BackboneConfig(border="reflect"))
    assert "### Border diagnostic before / after the trunk change (validation split)" in md
    assert "VALIDATION numbers" in md and "variant `reflect`" in md
    cells = [[c.strip() for c in line.split("|")[1:-1]] for line in md.splitlines() if "LVW w/o alignment" in line]
    # dataset, method, trunk, chosen, seeds, val_accuracy, val_iou, word_border, peak_border, chance
    assert cells == [["d", "LVW w/o alignment", "zeros (before)", "", "2", "0.810", "0.300", "0.800", "0.900", "0.490"],
                     ["d", "LVW w/o alignment", "reflect", "yes", "2", "0.810", "0.300", "0.400", "0.500", "0.490"]]


def test_the_stage_label_follows_the_trunks_border():
    from lvwlib.paper.border import file_stem, trunk_stage

    assert trunk_stage("zeros") == "before trunk change"
    assert trunk_stage("context") == trunk_stage("reflect") == "after trunk change"
    assert file_stem(trunk_stage("context")) == "border_diagnostic_after_trunk_change"
