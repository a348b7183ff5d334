"""Known-answer tests of ProtoPNet's 95th-percentile patch box."""

from __future__ import annotations

import pytest
import torch

from lvwlib.core.maps import high_activation_box, patch_box, upsample_map


def test_box_around_the_top_five_percent():
    act = torch.zeros(10, 10)
    act[2, 3] = 5.0  # 5 of 100 pixels are high: exactly the top 5 %
    act[4, 7] = 4.0
    act[3, 5] = 3.0
    act[2, 6] = 2.0
    act[4, 4] = 1.5
    # the 95th percentile (linear interpolation) lies between 0 and 1.5, so the five pixels are kept
    assert high_activation_box(act) == (2, 5, 3, 8)


def test_single_peak_gives_a_one_pixel_box_at_percentile_100():
    act = torch.arange(16.0).view(4, 4)
    assert high_activation_box(act, percentile=100.0) == (3, 4, 3, 4)


def test_upsampled_box_covers_the_peak_cell():
    act = torch.zeros(4, 4)
    act[1, 2] = 1.0  # latent cell (1, 2) covers pixels rows 8..15, cols 16..23 of a 32-px image
    top, bottom, left, right = patch_box(act, 32)
    assert top <= 8 and bottom >= 16 and left <= 16 and right >= 24
    assert bottom - top < 32 and right - left < 32  # a box, not the whole image
    assert upsample_map(act, 32).shape == (32, 32)


def test_box_needs_a_2d_map():
    with pytest.raises(ValueError, match=r"\[H, W\]"):
        high_activation_box(torch.zeros(1, 4, 4))
