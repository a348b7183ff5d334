"""Benchmark (not a test): CPU cost of ProtoPShare's official joint epochs between merges.

    .venv/bin/python benchmarks/bench_protopshare_schedule.py [--images 100] [--threads 1]

On synthetic cached features of EfficientNet-Lite0's shapes (Ct 320 -> Cf 1280 on 7 x 7 through
a 1x1 conv + batch norm tail, D 128, 10 classes x 10 words) and params/default.yaml's ProtoPNet
budget (5 warm-up + 20 joint epochs, push every 10, 20 last-layer passes, batch 32), prints the
CPU seconds of: training the ProtoPNet, ProtoPShare as today (8 merge steps, last layer only) and
ProtoPShare with params/calibration_baselines.yaml's ``protopshare_official`` (5 joint epochs and a
push before each merge step). Costs scale about linearly with --images; the ratios are the point.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from lvwlib.core.config import LVWConfig
from lvwlib.core.model import PrototypeNet
from lvwlib.core.train import train_prototype_net
from lvwlib.methods.protopshare import ProtoPShareConfig, protopshare

OFFICIAL = ProtoPShareConfig(joint_epochs=5, lr_tail=1e-4, lr_words=3e-3, lr_last=1e-4, weight_decay=1e-3,
                             lr_decay_every=5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tail = nn.Sequential(nn.Conv2d(320, 1280, 1, bias=False), nn.BatchNorm2d(1280), nn.ReLU6())
    net = PrototypeNet(tail, 1280, num_classes=10, words_per_class=10, feature_dim=128, seed=0)
    feats = torch.randn(args.images, 2, 320, 7, 7).half()
    labels = torch.arange(args.images) % 10
    cfg = LVWConfig(words_per_class=10, class_specific=True, separation=-0.08, beta_align=0.0, warm_epochs=5,
                    joint_epochs=20, push_every=10, last_layer_epochs=20, batch_size=32)
    seconds = {}
    start = time.process_time()
    train_prototype_net(net, feats, labels, None, cfg, progress=False)
    seconds["protopnet"] = time.process_time() - start
    for name, share in (("protopshare today", ProtoPShareConfig()), ("protopshare official", OFFICIAL)):
        start = time.process_time()
        protopshare(net, feats, labels, share, cfg, progress=False)
        seconds[name] = time.process_time() - start
    print(f"{args.images} images, {args.threads} thread(s), CPU seconds:")
    for name, s in seconds.items():
        print(f"  {name:22s} {s:7.1f}  ({s / seconds['protopnet']:.2f} x ProtoPNet)")


if __name__ == "__main__":
    main()
