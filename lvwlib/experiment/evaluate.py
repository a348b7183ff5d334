"""The Table 1 evaluation: accuracy and IoU coverage of an explainer over one split.

Kept apart from the stages on purpose: its code fingerprint (this module and the
metrics it imports) is what a result's key adds to the method's key, so an edit
here re-evaluates every method without retraining any.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from lvwlib.core.metrics import accuracy, iou_sweep

# Images per explain call of the Table 1 evaluation. A model's outputs can differ in their last bits with
# the batch's size, enough to move a pixel across the q-th percentile: whatever shows a test image's IoU
# (explorer, figures) explains it inside the same batch, so its number is Table 1's per-image IoU to the bit.
EVAL_BATCH = 50

# (x [B, Ct, h, w], image index [B] into the split, split name) -> (logits [B, C], maps [B, m, h, w])
Explainer = Callable[[torch.Tensor, torch.Tensor, str], tuple[torch.Tensor, torch.Tensor]]


def evaluate_batches(
    explain: Explainer,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    cams: torch.Tensor,
    labels: torch.Tensor,
    ev: Any,
    device: torch.device,
    split: str = "test",
) -> dict[str, Any]:
    """Accuracy and IoU coverage over the unflipped images of ``split``.

    Args:
        explain: the method's explainer (see :data:`Explainer`).
        batches: (trunk [B, Ct, h, w] on ``device``, index [B]) of the unflipped images
            of ``split``, in order, covering all of them.
        cams: [N, 2, hc, wc] base-model Grad-CAM of those images; labels: [N].
        ev: the :class:`lvwlib.core.config.EvalConfig`.
        split: ``test`` (reported numbers) or ``val`` (every choice of defaults).
    Returns:
        accuracy, iou (at eval.quantile), iou_q<q> for each swept quantile,
        iou_reference (the reference code's low-region variant at eval.quantile),
        iou_reference_q<q> (that variant at each swept quantile),
        and per-image IoU at eval.quantile.
    """
    quantiles = sorted({*ev.quantiles, ev.quantile})
    logits_all, ious = [], {q: [] for q in quantiles}
    # the reference code's low-region variant at every q (second row of Figure 3(b-f))
    ref_ious: dict[float, list[torch.Tensor]] = {q: [] for q in quantiles}
    for x, index in batches:
        logits, maps = explain(x, index, split)
        target = cams[index, 0].to(device)
        logits_all.append(logits.detach().float().cpu())
        sweep = iou_sweep(target, maps.detach().float(), quantiles, ev.eval_size)
        for q in quantiles:
            ious[q].append(sweep[("paper", q)].cpu())
            ref_ious[q].append(sweep[("reference", q)].cpu())
    logits = torch.cat(logits_all)
    result: dict[str, Any] = {
        "accuracy": accuracy(logits, labels),
        "iou": torch.cat(ious[ev.quantile]).mean().item(),
        "iou_reference": torch.cat(ref_ious[ev.quantile]).mean().item(),
        "per_image_iou": torch.cat(ious[ev.quantile]).tolist(),
    }
    for q in quantiles:
        result[f"iou_q{int(q)}"] = torch.cat(ious[q]).mean().item()
        result[f"iou_reference_q{int(q)}"] = torch.cat(ref_ious[q]).mean().item()
    return result
