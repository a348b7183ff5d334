"""What a backbone's convolutions see beyond the image edge (:attr:`BackboneConfig.border`).

The frozen trunks zero-pad: on a 7 x 7 grid a 5 x 5 depthwise convolution of EfficientNet-Lite0
sees 9 real inputs of 25 at a corner and 15 on an edge, so the border cells carry a position code
shared by every image (issue 15). Three settings:

* ``zeros``: the weights' own zero padding (the backbone untouched).
* ``reflect``: every padded convolution of the backbone (trunk and tail) reflect-pads instead:
  PyTorch's ``padding_mode="reflect"`` for symmetric padding, and for timm's TF "SAME"
  convolutions (stride 2, padding decided by the input size) the same asymmetric amounts
  reflected. A spatially constant image then gives spatially constant features. The weights,
  their names and every output shape stay as they are.
* ``context``: the image is reflect-padded by one cell of the backbone's output grid per side
  (32 px at stride 32: 224 -> 288 px), the trunk runs on it (9 x 9 cells at stride 32) and the
  inner cells are kept (7 x 7), so the kept border cells see (mirrored) image content where they
  saw zeros. Each kept cell covers the same image pixels as before (the pad is a whole number of
  cells at every stride of the trunk). The trunk costs (288 / 224)^2 = 1.65x its FLOPs.
  Reflection commutes with a horizontal flip, so the flip of a padded image is the padded flip.

Extra cost: ``reflect`` none (a pad copy per convolution); ``context`` (1 + 2 / g)^2 of the trunk
for an output grid of g cells (1.65x at g = 7).
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BORDERS", "ContextCrop", "ContextPad", "ReflectSameConv2d", "apply_border", "context_cells",
           "reflect_padding"]

BORDERS: tuple[str, ...] = ("zeros", "reflect", "context")

# Strides of a backbone's output grid and of its trunk's output per tail split ("all": the trunk only
# normalises, no grid: context padding has nothing to crop).
OUTPUT_STRIDE: dict[str, int] = {"efficientnet_lite0": 32, "resnet34": 32, "tiny": 8}
TRUNK_STRIDE: dict[tuple[str, str], int] = {
    ("efficientnet_lite0", "head"): 32, ("efficientnet_lite0", "block6"): 32,
    ("resnet34", "layer4"): 16, ("resnet34", "layer3"): 8, ("tiny", "head"): 4,
}


class ReflectSameConv2d(nn.Conv2d):
    """TF "SAME" convolution (timm ``Conv2dSame``: total padding from the input size, the odd pixel
    at the end) with reflected instead of zero padding: [B, Cin, H, W] -> [B, Cout, ceil(H/s), ceil(W/s)]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s, d in zip(x.shape[-2:], self.kernel_size, self.stride, self.dilation, strict=True):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        x = F.pad(x, (left, right, top, bottom), mode="reflect")
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _is_same_conv(module: nn.Module) -> bool:
    """timm's TF "SAME" convolution (looked up by name: timm is imported only by the lite0 builder)."""
    return type(module).__name__ == "Conv2dSame" and isinstance(module, nn.Conv2d)


def reflect_padding(module: nn.Module) -> int:
    """Make every zero-padded convolution inside ``module`` reflect-pad, in place; returns how many.

    Parameters, buffers and their names are untouched (saved weights load as before).
    """
    changed = 0
    for conv in module.modules():
        if _is_same_conv(conv):
            conv.__class__ = ReflectSameConv2d  # same attributes, padding computed in forward
            changed += 1
        elif isinstance(conv, nn.Conv2d) and conv.padding_mode == "zeros" and any(
            p > 0 for p in conv._reversed_padding_repeated_twice
        ):
            conv.padding_mode = "reflect"
            changed += 1
    return changed


class _PerSide(nn.Module):
    """A module that widens or narrows a map by a fixed amount on each of its four sides."""

    unit = "amount"  # what the amount counts, for the repr (pixels, cells)

    def __init__(self, amount: int) -> None:
        super().__init__()
        self.amount = int(amount)

    def extra_repr(self) -> str:
        return f"{self.unit}={self.amount}"


class ContextPad(_PerSide):
    """Reflect-pad an image batch by ``amount`` pixels per side: [B, 3, S, S] -> [B, 3, S + 2p, S + 2p]."""

    unit = "pixels"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.amount
        return F.pad(x, (p, p, p, p), mode="reflect")


class ContextCrop(_PerSide):
    """Keep the inner cells of a grid: [B, C, h + 2c, w + 2c] -> [B, C, h, w] (``amount`` = c cells per side)."""

    unit = "cells"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.amount
        return x[..., c : x.shape[-2] - c, c : x.shape[-1] - c]


def context_cells(name: str, split: str) -> tuple[int, int]:
    """(pixels padded per side, trunk cells cropped per side) of ``context`` for backbone ``name``.

    One cell of the output grid per side: 32 px and 1 cell for Lite0 (trunk at stride 32), 32 px
    and 2 cells for ResNet-34's ``layer4`` split (trunk at stride 16).

    Raises:
        ValueError: a split whose trunk has no grid (``all``).
    """
    if (name, split) not in TRUNK_STRIDE:
        raise ValueError(f"backbone.border: context needs a trunk with a feature grid; {name!r} with tail "
                         f"{split!r} has none (valid: zeros, reflect)")
    pixels, stride = OUTPUT_STRIDE[name], TRUNK_STRIDE[(name, split)]
    return pixels, pixels // stride


def apply_border(border: str, trunk: nn.Sequential, tail: nn.Module, name: str, split: str) -> nn.Sequential:
    """The trunk (and, for ``reflect``, the tail, in place) with ``border``'s padding.

    Args:
        border: one of :data:`BORDERS`.
        trunk: the frozen trunk, images [B, 3, S, S] -> [B, Ct, h, w].
        tail: the trainable tail (``reflect`` changes its padded convolutions too, so a split
            moves no convolution from one padding to the other).
        name, split: the backbone and its resolved tail split (``context``'s strides).
    Returns:
        ``zeros``: ``trunk`` itself; ``reflect``: ``trunk`` changed in place; ``context``: a new
        sequential of the same class, [B, 3, S, S] -> pad -> ``trunk``'s layers -> crop ->
        [B, Ct, h, w], with the layers' names (and state_dict keys) unchanged.
    """
    if border not in BORDERS:
        raise ValueError(f"unknown backbone.border {border!r}; valid: {', '.join(BORDERS)}")
    if border == "reflect":
        reflect_padding(trunk)
        reflect_padding(tail)
        return trunk
    if border == "context":
        pixels, cells = context_cells(name, split)
        layers = OrderedDict([("context_pad", ContextPad(pixels)), *trunk.named_children(),
                              ("context_crop", ContextCrop(cells))])
        return type(trunk)(layers)
    return trunk
