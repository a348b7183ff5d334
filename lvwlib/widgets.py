"""An ipywidgets explorer of heatmaps: base Grad-CAM beside each method's top-word attention.

Pick a test image, a method and the quantile q; the explorer shows the image,
the base model's Grad-CAM, the method's combined word map A^k, both
high-attention masks at q, and their IoU.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch
from IPython.display import display

from lvwlib.losses import combined_word_map, upsample_cam
from lvwlib.metrics import mask_iou, quantile_mask
from lvwlib.viz import to_numpy_image

# (trunk [B, Ct, h, w], index [B]) -> (logits [B, C], word maps [B, m, h, w])
ExplainFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def explain_one(
    explain: ExplainFn, trunk: torch.Tensor, index: int, cam: torch.Tensor, size: int, q: float
) -> dict[str, torch.Tensor | float | int]:
    """Maps, masks and IoU of one image.

    Args:
        trunk: [Ct, h, w] trunk features of the image; cam: [hc, wc] its Grad-CAM.
    Returns:
        dict with ``cam`` and ``a_k`` ([S, S] in [0, 1]), their masks at q,
        ``iou`` and the predicted class ``pred``.
    """
    logits, maps = explain(trunk[None].float(), torch.tensor([index]))
    a_bar = upsample_cam(cam[None], size)
    a_k = combined_word_map(maps.detach(), size, "minmax")
    m_bar, m_k = quantile_mask(a_bar, q), quantile_mask(a_k, q)
    return {
        "cam": a_bar[0], "a_k": a_k[0], "mask_cam": m_bar[0], "mask_a_k": m_k[0],
        "iou": mask_iou(m_bar, m_k).item(), "pred": int(logits.argmax(1)),
    }


def heatmap_explorer(
    images: Callable[[int], torch.Tensor],
    trunk: torch.Tensor,
    cams: torch.Tensor,
    labels: list[int],
    classes: list[str],
    explainers: Mapping[str, ExplainFn],
) -> widgets.VBox:
    """Build (and display) the explorer.

    Args:
        images: index -> image [3, S, S] in [0, 1].
        trunk: [N, Ct, h, w] trunk features of the same images (unflipped).
        cams: [N, hc, wc] the base model's Grad-CAM of the same images.
        labels: [N] true classes; classes: class names.
        explainers: method name -> explain function (see :data:`ExplainFn`).
    """
    index = widgets.IntSlider(0, 0, len(labels) - 1, description="image")
    method = widgets.Dropdown(options=list(explainers), description="method")
    q = widgets.FloatSlider(50.0, min=10.0, max=95.0, step=5.0, description="q")
    out = widgets.Output()

    def draw(*_: object) -> None:
        i = index.value
        image = images(i)
        res = explain_one(explainers[method.value], trunk[i], i, cams[i], image.shape[-1], q.value)
        with out:
            out.clear_output(wait=True)
            fig, axes = plt.subplots(1, 4, figsize=(11, 3))
            img = to_numpy_image(image)
            panels = [
                (None, f"true: {classes[labels[i]]}\npred: {classes[res['pred']]}"),
                (res["cam"], "base Grad-CAM"),
                (res["a_k"], f"{method.value}: top-word map A^k"),
                (res["mask_cam"].float() + 2 * res["mask_a_k"].float(), f"masks at q={q.value:.0f}: IoU {res['iou']:.2f}"),
            ]
            for ax, (overlay, title) in zip(axes, panels, strict=True):
                ax.imshow(img)
                if overlay is not None:
                    cmap = "jet" if "mask" not in title else "viridis"
                    ax.imshow(overlay.numpy(), cmap=cmap, alpha=0.5)
                ax.set_title(title, fontsize=9)
                ax.axis("off")
            plt.show()

    for control in (index, method, q):
        control.observe(draw, names="value")
    box = widgets.VBox([widgets.HBox([index, method, q]), out])
    display(box)
    draw()
    return box
