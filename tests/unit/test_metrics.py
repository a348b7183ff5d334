"""IoU coverage and accuracy: hand-made cases and an independent numpy/sklearn cross-check."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import jaccard_score

from lvwlib.core.metrics import (
    IoUCoverage,
    accuracy,
    iou_sweep,
    mask_iou,
    quantile_mask,
    quantile_thresholds,
)


def test_accuracy():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, 1.0]])
    assert accuracy(logits, torch.tensor([0, 1, 1])) == pytest.approx(2 / 3)


def test_quantile_mask_high_and_low():
    m = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    # median (linear interpolation) = 2.5
    assert quantile_mask(m, 50).tolist() == [[[False, False], [True, True]]]
    assert quantile_mask(m, 50, "reference").tolist() == [[[True, True], [False, False]]]


def test_iou_by_hand():
    a = torch.tensor([[[True, True], [False, False]]])
    b = torch.tensor([[[True, False], [True, False]]])
    assert mask_iou(a, b).item() == pytest.approx(1 / 3)


def test_iou_coverage_identical_maps_is_one():
    cams = torch.rand(3, 7, 7)
    words = cams[:, None].repeat(1, 4, 1, 1)
    assert torch.allclose(IoUCoverage(size=28)(cams, words), torch.ones(3))


def test_iou_coverage_matches_numpy_and_sklearn():
    rng = np.random.default_rng(0)
    size, q = 16, 70.0
    cams = torch.from_numpy(rng.random((4, size, size)).astype(np.float32))
    words = torch.from_numpy(rng.random((4, 3, size, size)).astype(np.float32))
    ours = IoUCoverage(q=q, size=size)(cams, words).numpy()  # no resampling at the same size
    for i in range(4):
        cam = cams[i].numpy()
        cam = (cam - cam.min()) / (cam.max() - cam.min())
        ak = words[i].numpy().max(axis=0)
        ak = (ak - ak.min()) / (ak.max() - ak.min())
        m1 = cam >= np.percentile(cam, q)
        m2 = ak >= np.percentile(ak, q)
        assert ours[i] == pytest.approx(jaccard_score(m1.ravel(), m2.ravel()), abs=1e-6)


def test_reference_variant_differs_from_paper_above_median():
    rng = np.random.default_rng(1)
    cams = torch.from_numpy(rng.random((5, 8, 8)).astype(np.float32))
    words = torch.from_numpy(rng.random((5, 2, 8, 8)).astype(np.float32))
    paper = IoUCoverage(q=80, size=8)(cams, words).mean()
    reference = IoUCoverage(q=80, size=8, variant="reference")(cams, words).mean()
    # low regions hold 80% of pixels: random low regions overlap far more than high ones
    assert reference > paper + 0.2


def test_bad_quantile_and_variant():
    with pytest.raises(ValueError, match="quantile"):
        quantile_mask(torch.rand(1, 2, 2), 120)
    with pytest.raises(ValueError, match="variant"):
        quantile_mask(torch.rand(1, 2, 2), 50, "low")


@pytest.mark.parametrize("kind", ["random", "ties"])
def test_iou_sweep_equals_one_metric_per_q_and_variant(kind):
    # evaluate() uses the one-pass sweep; it must give IoUCoverage's numbers bit for bit
    g = torch.Generator().manual_seed(0)
    cams = torch.rand(4, 7, 7, generator=g)
    maps = torch.rand(4, 3, 7, 7, generator=g)
    if kind == "ties":  # flat and two-level maps: thresholds sit on ties
        cams[0] = 1.0
        maps[1] = (maps[1] > 0.5).float()
    qs = [0.0, 50.0, 60.0, 90.0, 100.0]
    sweep = iou_sweep(cams, maps, qs, size=16)
    assert set(sweep) == {(v, q) for v in ("paper", "reference") for q in qs}
    for (variant, q), iou in sweep.items():
        expected = IoUCoverage(q=q, size=16, variant=variant)(cams, maps)
        assert torch.equal(iou, expected), (variant, q)


def test_quantile_thresholds_shape_and_range_check():
    maps = torch.arange(8.0).view(2, 2, 2)
    t = quantile_thresholds(maps, [0.0, 50.0, 100.0])
    assert t.shape == (3, 2)
    assert t[:, 0].tolist() == [0.0, 1.5, 3.0] and t[:, 1].tolist() == [4.0, 5.5, 7.0]
    with pytest.raises(ValueError, match="quantile"):
        quantile_thresholds(maps, [150.0])
