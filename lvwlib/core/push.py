"""Projection ("push") of words onto their nearest training patches (paper Eq. 4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from lvwlib.core import distributed as dist
from lvwlib.core.batches import as_source
from lvwlib.core.devices import Runtime, model_runtime
from lvwlib.core.model import PrototypeNet


@dataclass(frozen=True)
class WordSource:
    """The training patch a word was projected onto: the one word-source type of the package.

    Push scans the unflipped training images only, so there is no orientation field.
    """

    image: int  # index of the training image (into the cached training features / the train split)
    row: int  # patch row in the h x w latent grid
    col: int  # patch column


@dataclass
class PushRecord:
    """Where each word was projected; the word's visualisation source.

    All tensors are [M].
    """

    image: torch.Tensor  # long, index of the source training image (push scans the unflipped images only)
    row: torch.Tensor  # long, patch row in the h x w latent grid
    col: torch.Tensor  # long, patch column
    distance: torch.Tensor  # float, squared distance (word to its patch) before projection

    def as_rows(self) -> list[dict[str, float]]:
        """One plain dict per word: word, image, row, col, distance (what results and checkpoints store)."""
        return [
            {"word": j, "image": int(self.image[j]), "row": int(self.row[j]), "col": int(self.col[j]),
             "distance": float(self.distance[j])}
            for j in range(len(self.image))
        ]


@torch.no_grad()
def push_words(
    model: PrototypeNet,
    feats: Any,
    labels: torch.Tensor | None,
    class_specific: bool = False,
    batch_size: int = 128,
    progress: bool = True,
    runtime: Runtime | None = None,
) -> PushRecord:
    """Replace every word by its nearest latent patch over the unaugmented training set.

    The set is streamed in batches keeping per-word running minima, so it never
    has to fit in memory. Under DDP each rank scans its own images, then the
    per-word minima are all-reduced and the winning rank's patch is broadcast
    (:func:`lvwlib.core.distributed.reduce_push`); ties go to the lowest image index,
    as in one process.

    Args:
        model: the network; its ``words`` are overwritten in place.
        feats: [N, 2, Ct, h, w] cached trunk features (only index 0, unflipped,
            is used), or a batch source (then ``labels`` is ignored).
        labels: [N].
        class_specific: ProtoPNet: a word may only take a patch of an image of
            one of its own classes (``model.word_classes``); LVW: any image.
        runtime: device and autocast of the forward passes (distances are float32);
            None: float32 where the model is.
    Returns:
        the :class:`PushRecord` of the projection.
    """
    runtime = model_runtime(model, runtime)
    source = as_source(feats, labels, device=runtime.device)
    model.to(runtime.device)
    model.eval()
    num_words, dim = model.words.shape
    device = runtime.device
    best_dist = torch.full((num_words,), float("inf"), device=device)
    best_vec = torch.zeros(num_words, dim, device=device)
    best_image = torch.full((num_words,), -1, dtype=torch.long, device=device)
    best_pos = torch.zeros(num_words, dtype=torch.long, device=device)
    width = None
    batches = source.ordered_batches(batch_size, flips=(0,))
    for batch in tqdm(batches, desc="push", disable=not progress, leave=False):
        with runtime.autocast():
            latent = model.latent(batch.x)  # [B, D, h, w]
        latent = latent.float()
        width = latent.shape[3]
        flat = patch_distances(latent, model.words)  # [B, M, hw]
        if class_specific:
            allowed = model.word_classes.T[batch.y].bool()  # [B, M]
            flat = torch.where(allowed[:, :, None], flat, torch.full_like(flat, float("inf")))
        per_image_min, per_image_pos = flat.min(dim=2)  # [B, M]
        batch_min, batch_image = per_image_min.min(dim=0)  # [M]
        better = batch_min < best_dist
        if better.any():
            words = torch.nonzero(better).flatten()
            img = batch_image[words]
            pos = per_image_pos[img, words]
            best_dist[words] = batch_min[words]
            best_image[words] = batch.index.to(device)[img]
            best_pos[words] = pos
            lat_flat = latent.flatten(2)  # [B, D, hw]
            best_vec[words] = lat_flat[img, :, pos]
    width = dist.agree_int(width)
    best_dist, best_image, best_pos, best_vec = dist.reduce_push(best_dist, best_image, best_pos, best_vec)
    if (best_image < 0).any():
        missing = torch.nonzero(best_image < 0).flatten().tolist()
        raise ValueError(f"words {missing[:10]} found no allowed training patch (a class with no images?)")
    squared = (best_vec - model.words).pow(2).sum(dim=1)  # [M]: the winners' squared distances, exact
    model.words.data.copy_(best_vec)
    return PushRecord(
        image=best_image.cpu(),
        row=(best_pos // width).cpu(),
        col=(best_pos % width).cpu(),
        distance=squared.cpu(),
    )


def patch_distances(latent: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
    """Euclidean distance of every word to every latent patch: [B, D, h, w], [M, D] -> [B, M, h*w].

    Computed from the differences (``torch.cdist`` without its matrix-product shortcut), not
    the expanded form ``|z|^2 - 2 z.w + |w|^2``, whose cancellation could pick a wrong patch.
    The distance, not its square: the same order and argmin, and the kernel never holds the
    [B, M, D, h*w] differences in memory; that broadcast made push memory-bound (1,020 words on
    flowers102: ~60 s a push on one core, issue 17).
    """
    patches = latent.flatten(2).transpose(1, 2)  # [B, hw, D]
    out = torch.cdist(patches, words[None].to(patches.dtype), compute_mode="donot_use_mm_for_euclid_dist")
    return out.transpose(1, 2)  # [B, M, hw]
