"""Losses of LVW (method.md section 2) and of ProtoPNet (section 5).

Each loss is a plain function of tensors so it can be checked by hand.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lvwlib.core.maps import combined_word_map, upsample_cam


def cluster_loss(
    min_distances: torch.Tensor,
    word_classes: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over images of the smallest squared distance between a patch and a word.

    Args:
        min_distances: [B, M] per image and word, the smallest squared patch distance.
        word_classes: [M, C] 0/1 identities; with ``labels``, only the words of the
            image's own class count (ProtoPNet). ``None``: any word (LVW, Eq. 1).
        labels: [B] class indices, required with ``word_classes``.
    Returns:
        scalar.
    """
    if word_classes is None:
        return min_distances.min(dim=1).values.mean()
    own = _own_class_mask(word_classes, labels)  # [B, M] bool
    return _masked_min(min_distances, own).mean()


def separation_loss(
    min_distances: torch.Tensor, word_classes: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """ProtoPNet's separation cost: mean over images of the smallest squared distance
    to any word NOT of the image's class. It enters the total loss with a negative
    coefficient (-0.08), pushing other classes' words away.

    Args:
        min_distances: [B, M]; word_classes: [M, C] 0/1; labels: [B].
    Returns:
        scalar.
    """
    other = ~_own_class_mask(word_classes, labels)
    return _masked_min(min_distances, other).mean()


def _own_class_mask(word_classes: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    if labels is None:
        raise ValueError("labels are required for class-specific losses")
    return word_classes.T[labels].bool()  # [B, M]


def _masked_min(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Row-wise min of ``values`` [B, M] over entries where ``mask`` [B, M] is True."""
    if not bool(mask.any(dim=1).all()):
        raise ValueError("an image has no word in the mask (a class without words?)")
    big = torch.finfo(values.dtype).max
    return torch.where(mask, values, torch.full_like(values, big)).min(dim=1).values


def alignment_loss(
    similarity_maps: torch.Tensor,
    scores: torch.Tensor,
    cams: torch.Tensor,
    k: int,
    size: int,
    normalise: str = "max",
) -> torch.Tensor:
    """Attention alignment (Eq. 2): MSE between A^k and the base model's Grad-CAM.

    Args:
        similarity_maps: [B, M, h, w] activation maps of all words.
        scores: [B, M] word scores; the k highest per image are pooled.
        cams: [B, hc, wc] Grad-CAM of the same images in the same orientation;
            upsampled bilinearly to ``size`` and min-max scaled to [0, 1].
        k: number of top words.
        size: side S of the comparison (the image size in the paper).
    Returns:
        scalar, averaged over pixels and images.
    """
    top = torch.topk(scores, k=min(k, scores.shape[1]), dim=1).indices  # [B, k]
    chosen = torch.gather(
        similarity_maps, 1, top[:, :, None, None].expand(-1, -1, *similarity_maps.shape[2:])
    )
    a_k = combined_word_map(chosen, size, normalise)
    target = upsample_cam(cams, size)
    return F.mse_loss(a_k, target)


def l1_last_layer(weight: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """sum |w| over the last layer [C, M]; with ``mask`` [C, M] only where mask is 1
    (ProtoPNet: the connections from words to classes other than their own)."""
    if mask is None:
        return weight.abs().sum()
    return (weight * mask).abs().sum()
