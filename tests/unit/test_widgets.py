"""The heatmap explorer: its per-image computation and that it builds."""

from __future__ import annotations

import matplotlib
import torch

from lvwlib.ui.widgets import explain_one, heatmap_explorer

matplotlib.use("Agg")


def _self_explainer(cams):
    # explains every image by its own Grad-CAM, so IoU must be 1
    return lambda x, index: (torch.tensor([[0.0, 1.0]]), cams[index][:, None])


def test_explain_one_self_explanation_has_iou_one():
    cams = torch.rand(3, 4, 4)
    res = explain_one(_self_explainer(cams), torch.zeros(2, 4, 4), 1, cams[1], size=16, q=70)
    assert res["iou"] == 1.0 and res["pred"] == 1
    assert res["a_k"].shape == (16, 16)
    assert abs(res["mask_cam"].float().mean().item() - 0.3) < 0.01  # the top 30% of pixels


def test_explorer_builds():
    cams = torch.rand(3, 4, 4)
    box = heatmap_explorer(lambda i: torch.rand(3, 16, 16), torch.zeros(3, 2, 4, 4), cams, [0, 1, 0],
                           ["a", "b"], {"self": _self_explainer(cams)})
    slider = box.children[0].children[0]
    slider.value = 2  # redraws without error
    assert slider.max == 2
