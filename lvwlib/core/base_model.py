"""The base model: backbone tail + global average pooling + linear classifier.

It works on cached trunk features, so its input is the trunk output, not an image.
"""

from __future__ import annotations

import torch
from torch import nn

from lvwlib.core.batches import inference_in_chunks


class BaseModel(nn.Module):
    """Tail of the backbone followed by GAP and a linear classifier.

    Args:
        tail: module mapping trunk features [B, Ct, h, w] to features [B, Cf, h, w].
        feature_channels: Cf, the channel count of the tail output.
        num_classes: C.
    """

    def __init__(self, tail: nn.Module, feature_channels: int, num_classes: int) -> None:
        super().__init__()
        self.tail = tail
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(feature_channels, num_classes)

    def features(self, trunk: torch.Tensor) -> torch.Tensor:
        """[B, Ct, h, w] trunk features -> [B, Cf, h, w] tail features (in CPU chunks outside training)."""
        return inference_in_chunks(self.tail, trunk, (self.tail,))

    def forward(self, trunk: torch.Tensor) -> torch.Tensor:
        """[B, Ct, h, w] trunk features -> [B, C] logits, on the input's device (moved there and back
        when the model lives elsewhere, e.g. a notebook's CPU features and a model on the GPU)."""
        home = self.classifier.weight.device
        if trunk.device != home:
            return self.forward(trunk.to(home)).to(trunk.device)
        return self.classifier(self.pool(self.features(trunk)).flatten(1))
