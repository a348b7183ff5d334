"""Benchmarks of the expensive steps (not tests): trunk features, Grad-CAM, one LVW epoch.

    .venv/bin/python benchmarks/bench_pipeline.py [--images 64] [--threads 2]

Random inputs of the real shapes (EfficientNet-Lite0, 224 px); prints a json of
throughputs. Numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from lvwlib.attention import gradcam_maps
from lvwlib.backbones import build_backbone
from lvwlib.base_model import BaseModel
from lvwlib.batches import CachedSource
from lvwlib.cache import compute_trunk_features
from lvwlib.config import BackboneConfig, LVWConfig
from lvwlib.data import TensorImageDataset
from lvwlib.model import PrototypeNet
from lvwlib.train import _train_epoch


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n = args.images
    backbone = build_backbone(BackboneConfig())
    images = TensorImageDataset(torch.rand(n, 3, 224, 224), [0] * n, ["x"])
    out: dict[str, float] = {}
    t = timed(lambda: compute_trunk_features(backbone.trunk, images, progress=False))
    out["trunk_images_per_s (orig+flip)"] = n / t
    feats = torch.randn(n, 2, backbone.trunk_channels, 7, 7).half()
    labels = torch.randint(0, 10, (n,))
    base = BaseModel(backbone.tail, backbone.feature_channels, 10)
    t = timed(lambda: gradcam_maps(base, feats, progress=False))
    out["gradcam_images_per_s (orig+flip)"] = n / t
    cams = torch.rand(n, 2, 7, 7)
    for align_size in (0, 56, 224):
        cfg = LVWConfig(align_size=max(align_size, 1), beta_align=10.0 if align_size else 0.0, batch_size=32)
        model = PrototypeNet(backbone.tail, backbone.feature_channels, 10)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        g = torch.Generator().manual_seed(0)
        t = timed(lambda cfg=cfg, model=model, opt=opt, g=g: _train_epoch(model, CachedSource(feats, labels, cams), cfg, opt, False, g))
        out[f"lvw_joint_images_per_s (align {align_size or 'off'})"] = n / t
    print(json.dumps({k: round(v, 1) for k, v in out.items()}, indent=2))


if __name__ == "__main__":
    main()
