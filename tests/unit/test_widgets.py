"""The explorer's per-image view on tiny tensors: self-explanation, evaluation size, masks."""

from __future__ import annotations

import torch

from lvwlib.core.metrics import iou_coverage
from lvwlib.ui.explorer import explain_image, image_view, word_view


class _SelfExplainer:
    """Explains an image by a given map (its own Grad-CAM: IoU must be 1); words 0 and 1."""

    def __init__(self, maps: torch.Tensor) -> None:
        self.maps = maps  # [m, h, w]
        self.words = None

    def explain(self, x: torch.Tensor, m: int):
        return torch.tensor([[0.0, 1.0]]), self.maps[None, :m], torch.tensor([[0, 1]])

    def word_maps(self, x: torch.Tensor) -> torch.Tensor:
        return self.maps[None]


def test_self_explanation_has_iou_one_at_the_evaluation_size():
    cam = torch.rand(4, 4, generator=torch.Generator().manual_seed(0))
    explained = explain_image(_SelfExplainer(cam[None].repeat(2, 1, 1)), torch.zeros(2, 4, 4), m=2)
    view = image_view(explained, cam, eval_size=24, q=70)
    assert view["iou"] == 1.0 and view["pred"] == 1 and view["words"] == [0, 1]
    assert view["cam"].shape == (24, 24) and view["a_k"].shape == (24, 24)  # measured at eval_size
    assert abs(view["mask_cam"].float().mean().item() - 0.3) < 0.01  # the top 30% of pixels


def test_view_iou_is_the_evaluations_iou():
    g = torch.Generator().manual_seed(1)
    cam, maps = torch.rand(4, 4, generator=g), torch.rand(3, 4, 4, generator=g)
    view = image_view(explain_image(_SelfExplainer(maps), torch.zeros(2, 4, 4), m=3), cam, eval_size=20, q=60)
    assert view["iou"] == iou_coverage(cam[None], maps[None], 60, 20).item()
    assert view["iou"] < 1.0


def test_word_view_map_is_min_max_scaled_at_image_size():
    maps = torch.arange(32.0).view(2, 4, 4)
    info = word_view(_SelfExplainer(maps), torch.zeros(2, 4, 4), word=1, pred=0, size=16)
    assert info["map"].shape == (16, 16)
    assert abs(info["map"].min().item()) < 1e-6 and abs(info["map"].max().item() - 1) < 1e-6
    assert info["score"] == 31.0 and info["weight"] is None
