"""Example test images under attention maps (notebooks 01 and 02): where the base model looks,
and where each model's combined word map looks, with its IoU coverage."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import torch

from lvwlib.core.maps import upsample_cam
from lvwlib.core.metrics import coverage
from lvwlib.experiment.models import TrainedModel
from lvwlib.paper.viz import example_indices, overlay_grid


def example_images(prep: Any, n: int = 8) -> tuple[list[int], torch.Tensor, list[int]]:
    """Up to ``n`` test images, one per class spread over the classes: positions, images [n, 3, S, S], labels."""
    idx = example_indices(prep.bundle.test.labels, n)
    return idx, torch.stack([prep.bundle.test[i][0] for i in idx]), [int(prep.test_labels[i]) for i in idx]


def gradcam_examples(prep: Any, base: Any, names: list[str], n: int = 8) -> plt.Figure:
    """The base model's Grad-CAM on example test images, of the image and of its mirror image
    (flipped back): the two maps LVW's alignment loss uses."""
    idx, images, labels = example_images(prep, n)
    size = images.shape[-1]
    cams = upsample_cam(base.test_cams[idx, 0], size)
    cams_flip = upsample_cam(base.test_cams[idx, 1], size).flip(-1)  # flipped back for comparison
    return overlay_grid(images, [cams, cams_flip], ["Grad-CAM", "Grad-CAM (flip, unflipped)"],
                        [names[c] for c in labels])


@torch.no_grad()
def attention_examples(
    prep: Any, base: Any, models: dict[str, TrainedModel], names: list[str], n: int = 8
) -> plt.Figure:
    """Example test images under the base Grad-CAM and each model's combined top-m word map.

    Maps are :func:`lvwlib.core.metrics.coverage` at the evaluation size; each row title gives
    the model's mean IoU over the images shown.
    """
    idx, images, labels = example_images(prep, n)
    ev = prep.exp.run.eval
    x = prep.test_feats[idx, 0].float()
    cams = base.test_cams[idx, 0]
    maps, rows = [], []
    for label, model in models.items():
        cov = coverage(cams, model.explain(x, ev.top_m)[1].float(), [ev.quantile], ev.eval_size)
        if not maps:
            maps, rows = [cov.cam], ["base Grad-CAM"]
        maps.append(cov.words)
        rows.append(f"{label} A^k (IoU {cov.iou(ev.quantile).mean():.2f})")
    return overlay_grid(images, maps, rows, [names[c] for c in labels])
