"""Projection ("push") of words onto their nearest training patches (paper Eq. 4)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from lvwlib.model import PrototypeNet


@dataclass
class PushRecord:
    """Where each word was projected; the word's visualisation source.

    All tensors are [M].
    """

    image: torch.Tensor  # long, index of the source training image
    flip: torch.Tensor  # long, 0: original orientation (push uses the unaugmented set)
    row: torch.Tensor  # long, patch row in the h x w latent grid
    col: torch.Tensor  # long, patch column
    distance: torch.Tensor  # float, squared distance before projection

    def as_rows(self) -> list[dict[str, float]]:
        return [
            {"word": j, "image": int(self.image[j]), "flip": int(self.flip[j]),
             "row": int(self.row[j]), "col": int(self.col[j]), "distance": float(self.distance[j])}
            for j in range(len(self.image))
        ]


@torch.no_grad()
def push_words(
    model: PrototypeNet,
    feats: torch.Tensor,
    labels: torch.Tensor,
    class_specific: bool = False,
    batch_size: int = 128,
    progress: bool = True,
) -> PushRecord:
    """Replace every word by its nearest latent patch over the unaugmented training set.

    Args:
        model: the network; its ``words`` are overwritten in place.
        feats: [N, 2, Ct, h, w] cached trunk features; only index 0 (unflipped) is used.
        labels: [N].
        class_specific: ProtoPNet: a word may only take a patch of an image of
            one of its own classes (``model.word_classes``); LVW: any image.
    Returns:
        the :class:`PushRecord` of the projection.
    """
    model.eval()
    num_words, dim = model.words.shape
    best_dist = torch.full((num_words,), float("inf"))
    best_vec = torch.zeros(num_words, dim)
    best_image = torch.full((num_words,), -1, dtype=torch.long)
    best_pos = torch.zeros(num_words, dtype=torch.long)
    width = None
    for start in tqdm(range(0, feats.shape[0], batch_size), desc="push", disable=not progress, leave=False):
        x = feats[start : start + batch_size, 0].float()
        latent = model.latent(x)  # [B, D, h, w]
        width = latent.shape[3]
        distances = torch.clamp(
            (latent[:, None] - model.words[None, :, :, None, None]).pow(2).sum(dim=2), min=0.0
        )  # [B, M, h, w], exact (not the expanded form) so the chosen patch is the true argmin
        flat = distances.flatten(2)  # [B, M, hw]
        if class_specific:
            allowed = model.word_classes.T[labels[start : start + batch_size]].bool()  # [B, M]
            flat = torch.where(allowed[:, :, None], flat, torch.full_like(flat, float("inf")))
        per_image_min, per_image_pos = flat.min(dim=2)  # [B, M]
        batch_min, batch_image = per_image_min.min(dim=0)  # [M]
        better = batch_min < best_dist
        if better.any():
            words = torch.nonzero(better).flatten()
            img = batch_image[words]
            pos = per_image_pos[img, words]
            best_dist[words] = batch_min[words]
            best_image[words] = start + img
            best_pos[words] = pos
            lat_flat = latent.flatten(2)  # [B, D, hw]
            best_vec[words] = lat_flat[img, :, pos]
    if (best_image < 0).any():
        missing = torch.nonzero(best_image < 0).flatten().tolist()
        raise ValueError(f"words {missing[:10]} found no allowed training patch (a class with no images?)")
    model.words.data.copy_(best_vec)
    return PushRecord(
        image=best_image,
        flip=torch.zeros(num_words, dtype=torch.long),
        row=best_pos // width,
        col=best_pos % width,
        distance=best_dist,
    )
