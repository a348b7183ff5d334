"""IoU coverage and accuracy: hand-made cases and an independent numpy/sklearn cross-check."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import jaccard_score

from lvwlib.core.metrics import (
    accuracy,
    coverage,
    iou_coverage,
    iou_sweep,
    mask_iou,
    quantile_thresholds,
)


def test_accuracy():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, 1.0]])
    assert accuracy(logits, torch.tensor([0, 1, 1])) == pytest.approx(2 / 3)


def test_masks_high_and_low():
    m = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    cov = coverage(m, m[:, None], [50.0], size=2)  # same size: no resampling; min-max keeps the order
    # median (linear interpolation) of (0, 1/3, 2/3, 1) = 1/2
    cam_high, words_high = cov.masks(50.0)
    assert cam_high.tolist() == [[[False, False], [True, True]]] and torch.equal(cam_high, words_high)
    assert cov.masks(50.0, "reference")[0].tolist() == [[[True, True], [False, False]]]


def test_iou_by_hand():
    a = torch.tensor([[[True, True], [False, False]]])
    b = torch.tensor([[[True, False], [True, False]]])
    assert mask_iou(a, b).item() == pytest.approx(1 / 3)


def test_iou_coverage_identical_maps_is_one():
    cams = torch.rand(3, 7, 7)
    words = cams[:, None].repeat(1, 4, 1, 1)
    assert torch.allclose(iou_coverage(cams, words, 50.0, 28), torch.ones(3))


def test_iou_coverage_matches_numpy_and_sklearn():
    rng = np.random.default_rng(0)
    size, q = 16, 70.0
    cams = torch.from_numpy(rng.random((4, size, size)).astype(np.float32))
    words = torch.from_numpy(rng.random((4, 3, size, size)).astype(np.float32))
    ours = iou_coverage(cams, words, q, size).numpy()  # no resampling at the same size
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
    paper = iou_coverage(cams, words, 80, 8).mean()
    reference = iou_coverage(cams, words, 80, 8, "reference").mean()
    # low regions hold 80% of pixels: random low regions overlap far more than high ones
    assert reference > paper + 0.2


def test_bad_quantile_and_variant():
    cams, words = torch.rand(1, 2, 2), torch.rand(1, 1, 2, 2)
    with pytest.raises(ValueError, match="quantile"):
        iou_coverage(cams, words, 120, 4)
    with pytest.raises(ValueError, match="variant"):
        iou_coverage(cams, words, 50, 4, "low")
    with pytest.raises(ValueError, match="no threshold for q = 90"):
        coverage(cams, words, [50.0], 4).iou(90.0)


@pytest.mark.parametrize("kind", ["random", "ties"])
def test_iou_sweep_equals_one_metric_per_q_and_variant(kind):
    # evaluate() uses the one-pass sweep; one q at a time (explorer, figures) must give its numbers bit for bit
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
        assert torch.equal(iou, iou_coverage(cams, maps, q, 16, variant)), (variant, q)
        # and an independent chain: upsample, per-map numpy-style percentile, mask, IoU
        a_bar = torch.nn.functional.interpolate(cams[:, None], size=(16, 16), mode="bilinear")[:, 0]
        a_k = torch.nn.functional.interpolate(maps, size=(16, 16), mode="bilinear").amax(1)
        mask = []
        for m in (a_bar, a_k):
            m = (m - m.amin((1, 2), keepdim=True)) / (m.amax((1, 2), keepdim=True) - m.amin((1, 2), keepdim=True) + 1e-8)
            t = torch.quantile(m.flatten(1), q / 100, dim=1).view(-1, 1, 1)
            mask.append(m >= t if variant == "paper" else m <= t)
        assert torch.allclose(iou, mask_iou(*mask), atol=0.02), (variant, q)


def test_quantile_thresholds_shape_and_range_check():
    maps = torch.arange(8.0).view(2, 2, 2)
    t = quantile_thresholds(maps, [0.0, 50.0, 100.0])
    assert t.shape == (3, 2)
    assert t[:, 0].tolist() == [0.0, 1.5, 3.0] and t[:, 1].tolist() == [4.0, 5.5, 7.0]
    with pytest.raises(ValueError, match="quantile"):
        quantile_thresholds(maps, [150.0])
