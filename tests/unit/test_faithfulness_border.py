"""Known answers for the deletion / insertion curves and the border diagnostic."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lvwlib.core.border import (
    border_mask,
    border_share,
    cams_on_grid,
    chance_border_share,
    location_shares,
    map_border_share,
    mean_map,
    peak_locations,
)
from lvwlib.core.faithfulness import curve_auc, perturbation_curve, pixel_order

S = 16


def region_model(region: torch.Tensor):
    """A 'model' whose class 1 probability is decided by the brightness inside ``region`` alone."""

    def predict(images: torch.Tensor) -> torch.Tensor:
        inside = (images.mean(dim=1) * region).sum(dim=(1, 2)) / region.sum()
        p1 = torch.sigmoid(12 * (inside - 0.5))
        return torch.stack([1 - p1, p1], dim=1)

    return predict


def test_the_region_that_decides_beats_its_complement_on_deletion_and_insertion() -> None:
    region = torch.zeros(S, S)
    region[3:9, 5:12] = 1.0
    # a bright object inside the region on a textured background (so the blur changes it)
    torch.manual_seed(0)
    images = torch.rand(2, 3, S, S) * 0.3
    images[:, :, 3:9, 5:12] = 1.0
    predict = region_model(region)
    target = torch.ones(2, dtype=torch.long)
    right, wrong = region.expand(2, S, S), (1 - region).expand(2, S, S)
    for mode, better in (("deletion", torch.lt), ("insertion", torch.gt)):
        good = curve_auc(perturbation_curve(predict, images, right, target, mode, steps=8))
        bad = curve_auc(perturbation_curve(predict, images, wrong, target, mode, steps=8))
        assert better(good, bad).all(), (mode, good, bad)


def test_curve_end_points_are_the_start_and_the_finish_images() -> None:
    predict = region_model(torch.ones(S, S))
    images = torch.full((1, 3, S, S), 0.9)
    sal = torch.rand(1, S, S)
    target = torch.tensor([1])
    deletion = perturbation_curve(predict, images, sal, target, "deletion", steps=4)
    assert deletion[0, 0] == pytest.approx(predict(images)[0, 1].item())
    assert deletion[0, -1] == pytest.approx(predict(torch.zeros_like(images))[0, 1].item())
    insertion = perturbation_curve(predict, images, sal, target, "insertion", steps=4)
    assert insertion[0, -1] == pytest.approx(predict(images)[0, 1].item())


def test_auc_by_hand() -> None:
    # points 1, 0.5, 0 at x = 0, 0.5, 1: trapezoids (1 + 0.5) / 4 + (0.5 + 0) / 4 = 0.5
    assert curve_auc(torch.tensor([[1.0, 0.5, 0.0]])).item() == pytest.approx(0.5)
    assert curve_auc(torch.tensor([[1.0, 1.0]])).item() == pytest.approx(1.0)


def test_pixel_order_is_descending_and_stable() -> None:
    sal = torch.tensor([[[0.1, 0.9], [0.9, 0.0]]])
    assert pixel_order(sal).tolist() == [[1, 2, 0, 3]]


def test_bad_arguments_are_named() -> None:
    predict = region_model(torch.ones(S, S))
    with pytest.raises(ValueError, match="mode"):
        perturbation_curve(predict, torch.rand(1, 3, S, S), torch.rand(1, S, S), torch.tensor([0]), "erase")
    with pytest.raises(ValueError, match="saliency"):
        perturbation_curve(predict, torch.rand(1, 3, S, S), torch.rand(1, 8, 8), torch.tensor([0]), "deletion")


def test_border_of_a_7x7_grid_has_24_cells() -> None:
    assert int(border_mask(7, 7).sum()) == 24
    assert chance_border_share(7, 7) == pytest.approx(24 / 49)
    assert border_mask(3, 3).tolist() == [[True, True, True], [True, False, True], [True, True, True]]


def test_a_map_that_peaks_only_on_the_border_has_border_share_1() -> None:
    maps = torch.zeros(4, 3, 7, 7)
    maps[:, 0, 0, 3] = 1.0  # top edge
    maps[:, 1, 6, 6] = 1.0  # corner
    maps[:, 2, 2, 0] = 1.0  # left edge
    assert map_border_share(maps) == 1.0
    centre = torch.zeros(2, 1, 7, 7)
    centre[:, 0, 3, 3] = 1.0
    assert map_border_share(centre) == 0.0


def test_border_share_of_pushed_locations_and_errors() -> None:
    rows, cols = torch.tensor([0, 3, 6, 2]), torch.tensor([3, 3, 1, 2])
    assert border_share(rows, cols, 7, 7) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="outside"):
        border_share(torch.tensor([7]), torch.tensor([0]), 7, 7)


def test_peak_locations_and_mean_map() -> None:
    maps = torch.zeros(2, 1, 3, 3)
    maps[0, 0, 1, 2] = 2.0
    maps[1, 0, 1, 2] = 5.0
    rows, cols = peak_locations(maps)
    assert rows.tolist() == [[1], [1]] and cols.tolist() == [[2], [2]]
    mean = mean_map(maps)
    assert mean[1, 2] == pytest.approx(1.0, abs=1e-6) and mean.sum() == pytest.approx(1.0, abs=1e-6)


def test_location_shares_and_the_base_rows_grid() -> None:
    maps = torch.zeros(2, 1, 7, 7)
    maps[0, 0, 0, 0] = 1.0  # a corner peak
    maps[1, 0, 3, 3] = 1.0  # a centre peak
    shares = location_shares(maps, torch.tensor([0, 3]), torch.tensor([6, 3]))
    assert shares == pytest.approx({"word_border": 0.5, "peak_border": 0.5, "chance": 24 / 49})
    assert np.isnan(location_shares(maps)["word_border"])  # no words
    cams = torch.zeros(1, 14, 14)
    cams[0, 12:, :2] = 1.0  # bottom-left 2 x 2 pixels: the grid's bottom-left cell
    grid = cams_on_grid(cams, 7, 7)
    assert grid.shape == (1, 1, 7, 7) and grid[0, 0, 6, 0] == 1.0 and grid.sum() == 1.0
