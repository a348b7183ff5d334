"""Prototype network shared by LVW and ProtoPNet (and ProtoPShare after merging).

Data flow: trunk features [B, Ct, h, w] -> tail [B, Cf, h, w] -> add-on
[B, D, h, w] = Z -> squared distances to the M words [B, M, h, w] ->
similarity maps log((d + 1) / (d + 1e-4)) -> scores (max over patches) [B, M]
-> last layer (no bias) [B, C].

LVW and ProtoPNet differ only in how words relate to classes:
``word_classes`` [M, C] is a 0/1 matrix of class identities. LVW uses it only
for the initial last-layer weights; ProtoPNet also for the class-specific
cluster/separation losses, push and L1 mask; ProtoPShare's merged words carry
several identities.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from lvwlib.core.batches import inference_in_chunks

EPSILON = 1e-4  # the +1e-4 in log((d + 1) / (d + 1e-4)), as in ProtoPNet


@dataclass
class PrototypeOutput:
    logits: torch.Tensor  # [B, C]
    min_distances: torch.Tensor  # [B, M] smallest squared distance of each word to any patch
    distances: torch.Tensor  # [B, M, h, w] squared distances of each word to each patch


def squared_distances(latent: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
    """Squared L2 distance of every patch to every word.

    Args:
        latent: Z, [B, D, h, w].
        words: V, [M, D].
    Returns:
        [B, M, h, w], computed as ||z||^2 - 2 z.v + ||v||^2 (one matmul) and
        clamped at 0 because the expansion can go slightly negative in float.
    """
    z_sq = (latent**2).sum(dim=1, keepdim=True)  # [B, 1, h, w]
    cross = torch.einsum("bdhw,md->bmhw", latent, words)  # [B, M, h, w]
    v_sq = (words**2).sum(dim=1).view(1, -1, 1, 1)  # [1, M, 1, 1]
    return torch.clamp(z_sq - 2 * cross + v_sq, min=0.0)


def float32_region(tensor: torch.Tensor):
    """Autocast switched off on ``tensor``'s device when it is on; else a no-op context."""
    if torch.is_autocast_enabled(tensor.device.type):
        return torch.autocast(device_type=tensor.device.type, enabled=False)
    return contextlib.nullcontext()


def log_similarity(distances: torch.Tensor) -> torch.Tensor:
    """log((d + 1) / (d + 1e-4)): large for small d, decreasing, > 0. Any shape."""
    return torch.log((distances + 1.0) / (distances + EPSILON))


def class_identity(num_words: int, num_classes: int, words_per_class: int) -> torch.Tensor:
    """[M, C] 0/1 matrix: word j belongs to class j // words_per_class."""
    if num_words != num_classes * words_per_class:
        raise ValueError(f"{num_words} words is not {words_per_class} per class for {num_classes} classes")
    identity = torch.zeros(num_words, num_classes)
    identity[torch.arange(num_words), torch.arange(num_words) // words_per_class] = 1.0
    return identity


class PrototypeNet(nn.Module):
    """Tail + add-on + words + last layer.

    Args:
        tail: [B, Ct, h, w] -> [B, Cf, h, w], trainable part of the backbone.
        feature_channels: Cf.
        num_classes: C.
        words_per_class: M / C (LVW 5, ProtoPNet 10).
        feature_dim: D (128 in the paper).
        seed: seed of the add-on and word initialisation.
    """

    def __init__(
        self,
        tail: nn.Module,
        feature_channels: int,
        num_classes: int,
        words_per_class: int = 5,
        feature_dim: int = 128,
        seed: int = 0,
    ) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.tail = tail
        self.add_on = nn.Sequential(
            nn.Conv2d(feature_channels, feature_dim, kernel_size=1),
            nn.ReLU(),
            nn.Conv2d(feature_dim, feature_dim, kernel_size=1),
            nn.Sigmoid(),
        )
        for layer in self.add_on:
            if isinstance(layer, nn.Conv2d):
                # Kaiming init as in ProtoPNet, drawn from our own generator for reproducibility.
                fan_out = layer.out_channels
                std = (2.0 / fan_out) ** 0.5
                with torch.no_grad():
                    layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * std)
                    layer.bias.zero_()
        num_words = num_classes * words_per_class
        # Words uniform in [0, 1): the add-on ends in a sigmoid, so Z lives in [0, 1]^D.
        self.words = nn.Parameter(torch.rand(num_words, feature_dim, generator=generator))
        self.last_layer = nn.Linear(num_words, num_classes, bias=False)
        self.register_buffer("word_classes", class_identity(num_words, num_classes, words_per_class))
        self.reset_last_layer()

    @torch.no_grad()
    def init_words_on_patches(self, trunk: torch.Tensor, labels: torch.Tensor, seed: int) -> None:
        """Place each class's words on latent patches of that class's training images.

        Word j of class c = j // words_per_class becomes the latent vector Z[i, :, r, s] of a
        training image i of class c and a cell (r, s), both drawn with a generator seeded by
        ``seed`` (images with replacement, cells uniform over the h x w grid).

        Args:
            trunk: trunk features of the training images, [N, Ct, h, w] (any float dtype).
            labels: their classes, [N] in 0..C-1.
        Raises:
            ValueError: a class without training images, or labels of another length.
        """
        if len(labels) != len(trunk):
            raise ValueError(f"{len(labels)} labels for {len(trunk)} images")
        generator = torch.Generator().manual_seed(seed)
        owner = self.word_classes.argmax(dim=1)  # [M]: the class each word starts in
        for c in range(self.num_classes):
            words = (owner == c).nonzero().flatten()
            images = (labels == c).nonzero().flatten()
            if len(images) == 0:
                raise ValueError(f"class {c} has no training images to place its words on")
            picked = images[torch.randint(len(images), (len(words),), generator=generator)]
            latent = self.latent(trunk[picked].to(self.words.device, torch.float32))  # [w, D, h, w]
            cells = torch.randint(latent.shape[2] * latent.shape[3], (len(words),), generator=generator)
            self.words[words] = latent.flatten(2)[torch.arange(len(words)), :, cells].to(self.words.dtype)

    @property
    def num_words(self) -> int:
        return self.words.shape[0]

    @property
    def num_classes(self) -> int:
        return self.last_layer.out_features

    def reset_last_layer(self, negative: float = -0.5) -> None:
        """+1 from each word to its class(es), ``negative`` to all other classes."""
        identity = self.word_classes.T  # [C, M]
        with torch.no_grad():
            self.last_layer.weight.copy_(identity + negative * (1 - identity))

    def latent(self, trunk: torch.Tensor) -> torch.Tensor:
        """[B, Ct, h, w] trunk features -> Z [B, D, h, w] (in CPU chunks outside training: the same floats, faster)."""
        return inference_in_chunks(lambda x: self.add_on(self.tail(x)), trunk, (self.tail, self.add_on))

    def forward(self, trunk: torch.Tensor) -> PrototypeOutput:
        """[B, Ct, h, w] trunk features -> :class:`PrototypeOutput`.

        Outputs are on the input's device: a CPU tensor given to a network on the
        GPU (a notebook cell on cached features) is moved there and back.
        """
        home = self.words.device
        if trunk.device != home:
            out = self.forward(trunk.to(home))
            return PrototypeOutput(*(t.to(trunk.device) for t in (out.logits, out.min_distances, out.distances)))
        latent = self.latent(trunk)
        # Distances and log-similarities in float32 even under mixed precision: the
        # expansion ||z||^2 - 2 z.v + ||v||^2 and the +1e-4 of the similarity lose
        # their small differences in 16 bits. (No-op in a float32 run.)
        with float32_region(latent):
            distances = squared_distances(latent.float(), self.words.float())
        min_distances = distances.flatten(2).min(dim=2).values  # [B, M]
        scores = log_similarity(min_distances)  # max of the similarity map = sim of min distance
        return PrototypeOutput(self.last_layer(scores), min_distances, distances)

    @torch.no_grad()
    def scores(self, trunk: torch.Tensor) -> torch.Tensor:
        """[B, Ct, h, w] -> word scores [B, M] (max of each activation map)."""
        return log_similarity(self(trunk).min_distances)

    @torch.no_grad()
    def explain(self, trunk: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits [B, C] and the activation maps [B, m, h, w] of each image's m top-scoring words."""
        out = self(trunk)
        similarity = log_similarity(out.distances)  # [B, M, h, w]
        top = torch.topk(-out.min_distances, k=min(m, self.num_words), dim=1).indices  # [B, m]
        maps = torch.gather(similarity, 1, top[:, :, None, None].expand(-1, -1, *similarity.shape[2:]))
        return out.logits, maps
