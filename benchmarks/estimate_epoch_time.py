"""ESTIMATED GPU time per epoch of the paper's setting, from FLOP counts (no GPU measured).

    .venv/bin/python benchmarks/estimate_epoch_time.py [--utilisation 0.35] [--gpus 1]

Counts the FLOPs of one training step (forward + backward) of LVW with the whole
ResNet-34 trainable at the dataset's image size (torch.utils.flop_counter, on the
CPU, one image), multiplies by the training-set size and divides by an assumed
sustained throughput: ``utilisation`` x the GPU's dense bf16 peak. The default 20 %
is an assumption: it is what the commonly reported ~2,600 images/s of ResNet-50
mixed-precision training on one A100 amounts to (x 24.6 GFLOP per image / 312 TFLOPS).
The counter sees matrix products and convolutions only (element-wise work, the
alignment loss's upsampling and the JPEG decoding are not in it); decoding
(~1-2 ms per image per DataLoader worker) needs about 8-16 workers per GPU to keep
up. Prints a markdown table.
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode

from lvwlib.backbones.split import build_backbone
from lvwlib.core.config import BackboneConfig, LVWConfig
from lvwlib.core.model import PrototypeNet
from lvwlib.core.train import prototype_losses

# Training images of the paper's six benchmarks (official splits; AwA2: 80 % of 37,322
# per class, lvwlib.data.paper_sets) and their classes and image sides.
DATASETS = {
    "stl10": (5000, 10, 96),
    "flowers102": (1020, 102, 224),
    "pets": (3680, 37, 224),
    "stanford_dogs": (12000, 120, 224),
    "awa2": (29858, 50, 224),
    "food101": (75750, 101, 224),
}
PEAK_BF16_TFLOPS = {"A100": 312.0, "H100 SXM": 989.0}  # dense tensor-core peaks (vendor data sheets)


def step_flops(num_classes: int, size: int) -> tuple[float, float]:
    """FLOPs per image of one LVW training step (fwd + bwd) and of one forward pass."""
    backbone = build_backbone(BackboneConfig(name="resnet34", weights="none", tail="all"))
    cfg = LVWConfig()
    net = PrototypeNet(backbone.tail, backbone.feature_channels, num_classes, cfg.words_per_class, cfg.feature_dim)
    x = backbone.trunk(torch.rand(2, 3, size, size))
    cams = torch.rand(2, size // 32, size // 32)
    with FlopCounterMode(display=False) as train:
        out = net(x)
        prototype_losses(net, out, torch.tensor([0, 1]), cams, cfg)["loss"].backward()
    with torch.no_grad(), FlopCounterMode(display=False) as forward:
        net(x)
    return train.get_total_flops() / 2, forward.get_total_flops() / 2


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--utilisation", type=float, default=0.20, help="sustained fraction of the bf16 peak")
    parser.add_argument("--gpus", type=int, default=1, help="GPUs under DDP (assumed 90 %% scaling beyond 1)")
    args = parser.parse_args()
    scaling = 1.0 if args.gpus == 1 else 0.9 * args.gpus
    print(f"ESTIMATE (no GPU measured): utilisation {args.utilisation:.0%} of bf16 peak, {args.gpus} GPU(s)\n")
    header = "| dataset | train images | GFLOP/image (step) | " + " | ".join(
        f"{g}: images/s | {g}: joint epoch | {g}: whole run" for g in PEAK_BF16_TFLOPS) + " |"
    print(header)
    print("|" + "---|" * (3 + 3 * len(PEAK_BF16_TFLOPS)))
    for name, (n, classes, size) in DATASETS.items():
        train, fwd = step_flops(classes, size)
        cells = []
        for peak in PEAK_BF16_TFLOPS.values():
            rate = peak * 1e12 * args.utilisation * scaling
            epoch = n * train / rate
            # 200 joint + 5 warm-up epochs (warm-up backpropagates only the head: ~ a forward)
            # + 20 pushes, each one forward pass for the push and two (both flips) for the scores.
            total = 200 * epoch + 5 * n * fwd / rate + 20 * 3 * n * fwd / rate
            cells += [f"{rate / train:.0f}", f"{epoch:.1f} s", f"{total / 3600:.2f} h"]
        print(f"| {name} | {n} | {train / 1e9:.1f} | " + " | ".join(cells) + " |")
    print("\nwhole run: 200 joint + 5 warm-up epochs + 20 pushes (each with the word scores"
          " of both flips), one seed, one method; the base model (20 epochs) adds ~10 %.")


if __name__ == "__main__":
    main()
