"""Benchmark (not a test): CPU cost of notebook 11's deletion / insertion curves per dataset and seed.

    .venv/bin/python benchmarks/bench_faithfulness.py [--images 8] [--steps 5] [--datasets 5] [--seeds 3]

Runs the real frozen trunk (EfficientNet-Lite0, 224 px, ONNX Runtime, params/default.yaml) on the
perturbed images of 8 rows (7 maps + the random map) of one dataset and seed, exactly as
:func:`lvwlib.paper.faithfulness.faithfulness_curves` batches them; the rows' heads are a linear
layer here (the methods' heads cost little next to the trunk). Prints the CPU time (this process,
ONNX Runtime's threads included) and the wall time, and extrapolates to datasets x seeds. Needs the
imagenette images under data/ and the Lite0 weights; the numbers depend on the machine's load.
"""

from __future__ import annotations

import argparse
import time

import torch

from lvwlib.backbones.split import build_backbone
from lvwlib.backbones.trunk_features import make_trunk_runner, trunk_onnx_inputs, trunk_onnx_path
from lvwlib.core.config import load_params
from lvwlib.data import load_dataset
from lvwlib.experiment.config import experiment_from_params
from lvwlib.paper.faithfulness import Perturbed, subset_indices
from lvwlib.store.paths import resolve

ROWS = 8  # Base + Grad-CAM, 6 methods, the random map


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--datasets", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    exp = experiment_from_params(load_params(resolve("params/default.yaml")), "imagenette")
    size = exp.run.data.image_size
    backbone = build_backbone(exp.run.backbone)
    trunk = make_trunk_runner(backbone.trunk, exp.run.backbone.runtime, size,
                              trunk_onnx_path(resolve(exp.run.cache_dir), exp.run.backbone, size),
                              trunk_onnx_inputs(exp.run.backbone, size))
    bundle = load_dataset(exp.run.data)
    idx = subset_indices(torch.tensor(bundle.test.labels), args.images, 0)
    images = torch.stack([bundle.test[int(i)][0] for i in idx])
    linear = torch.nn.Linear(backbone.trunk_channels, 10)

    def head(feats: torch.Tensor) -> torch.Tensor:
        return linear(feats.mean((2, 3)))

    trunk(images[:2])  # warm-up: session start, first-call allocations
    cpu, wall = time.process_time(), time.time()
    p = Perturbed(trunk, images, args.steps)
    for _ in range(ROWS):
        p.curves(head, p.interior(torch.rand(args.images, size, size)), torch.zeros(args.images, dtype=torch.long))
    cpu, wall = time.process_time() - cpu, time.time() - wall
    n = args.datasets * args.seeds
    passes = 3 * args.images + ROWS * args.images * 2 * (args.steps - 1)
    print(f"{args.images} images x {args.steps} steps, {ROWS} rows: {passes} trunk passes per dataset and seed; "
          f"CPU {cpu:.1f} s, wall {wall:.1f} s; x {n} (datasets x seeds): CPU {n * cpu:.0f} s, wall {n * wall:.0f} s")


if __name__ == "__main__":
    main()
