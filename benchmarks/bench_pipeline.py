"""Benchmarks of the expensive steps (not tests); prints markdown tables.

    nice -n 10 .venv/bin/python benchmarks/bench_pipeline.py            # a few minutes
    nice -n 10 .venv/bin/python benchmarks/bench_pipeline.py --images 1000 \\
        --lvw-train-per-class 100 --lvw-test-per-class 50 --joint-epochs 20   # bigger

1. Trunk features of real images (EfficientNet-Lite0 at 224 px, decoding included, every
   image and its flip): images/s and user CPU ms per image for each runtime
   (``backbone.runtime``) and each ``num_workers``; the ratio to eager with the same
   workers; max abs difference of the trunk outputs (float32) between the runtimes.
2. LVW alignment loss compared at ``align_size`` 56 vs 224 px: two small LVW models
   trained with :mod:`lvwlib.experiment.stages` on a small real subset (``params/default.yaml``
   otherwise): seconds per joint epoch, test accuracy and IoU coverage, and their
   differences.
3. Grad-CAM of the base model on random features of the real shapes.
4. IoU evaluation of one split (Table 1's 5 quantiles x 2 variants at 224 px): the one-pass
   sweep ``lvwlib.core.metrics.iou_sweep`` that ``evaluate`` uses against one ``iou_coverage``
   call per (q, variant), and whether their numbers are equal.

Every ratio is measured in the same run. Numbers depend on the machine and on what else
runs on it: user CPU time per image is less sensitive to other processes than images/s.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import lvwlib.core.train as lvw_train
from lvwlib.backbones.split import build_backbone
from lvwlib.backbones.trunk_features import (
    RUNTIMES,
    EagerTrunk,
    OnnxTrunk,
    compute_trunk_features,
    export_trunk_onnx,
    onnx_available,
)
from lvwlib.core.base_model import BaseModel
from lvwlib.core.config import BackboneConfig, DataConfig, load_params
from lvwlib.core.gradcam import gradcam_maps
from lvwlib.core.seeding import seed_everything
from lvwlib.data import load_dataset
from lvwlib.store.records import write_json

ROOT = Path(__file__).resolve().parents[1]


def cpu_seconds() -> float:
    """User CPU seconds of this process and of its finished children (DataLoader workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_utime
    return own + resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime


def measure(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """(result, wall seconds, user CPU seconds) of ``fn()``."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    value = fn()
    return value, time.perf_counter() - wall, cpu_seconds() - cpu


def markdown(rows: list[dict[str, Any]]) -> str:
    """A markdown table of ``rows`` (the keys of the first row are the columns)."""
    cols = list(rows[0])
    cell = lambda v: f"{v:.3g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------- 1. trunk


def bench_trunk(args: argparse.Namespace) -> list[dict[str, Any]]:
    per_class = max(1, args.images // 10)
    data = DataConfig(name="imagenette", root=args.data_root, max_per_class=per_class, max_test_per_class=1)
    dataset = load_dataset(data).train
    n = len(dataset)
    backbone = build_backbone(BackboneConfig(runtime="eager"))
    trunk = backbone.trunk
    # eager first: the other runtimes' ratios refer to it
    runtimes = sorted((r for r in RUNTIMES if r != "onnx" or onnx_available()), key=lambda r: r != "eager")
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "trunk.onnx"
        _, export_s, _ = measure(lambda: export_trunk_onnx(trunk, 224, onnx_path))
        print(f"ONNX export of the trunk: {export_s:.1f} s (once; cached under cache/trunk_onnx)")

        # Decoding alone, which also brings the files into the page cache for every run below.
        _, wall, cpu = measure(lambda: [dataset[i] for i in range(n)])
        print(f"decoding alone (1 process): {n / wall:.0f} images/s, {1e3 * cpu / n:.1f} ms CPU per image")

        # Trunk outputs in float32 (fp16 rounding would hide the difference).
        x = torch.stack([dataset[i][0] for i in range(min(n, 32))])
        eager_out = EagerTrunk(trunk)(x)
        diff = float("nan")
        if "onnx" in runtimes:
            diff = (OnnxTrunk(onnx_path)(x) - eager_out).abs().max().item()

        rows: list[dict[str, Any]] = []
        eager_rate: dict[int, float] = {}
        for runtime in runtimes:
            for workers in args.workers:
                _, wall, cpu = measure(
                    lambda runtime=runtime, workers=workers: compute_trunk_features(
                        trunk, dataset, num_workers=workers, progress=False,
                        runtime=runtime, onnx_path=onnx_path,
                    )
                )
                if runtime == "eager":
                    eager_rate[workers] = n / wall
                rows.append({
                    "runtime": runtime,
                    "num_workers": workers,
                    "images/s (with flips)": n / wall,
                    "vs eager": (n / wall) / eager_rate[workers],
                    "user CPU ms/image": 1e3 * cpu / n,
                    "max abs diff vs eager": 0.0 if runtime == "eager" else diff,
                })
    print(f"\n### Trunk features: {n} imagenette images at 224 px, each with its flip, "
          f"torch threads {torch.get_num_threads()}\n")
    print(markdown(rows))
    return rows


# --------------------------------------------------------------------------- 2. LVW


def bench_lvw(args: argparse.Namespace, cache_dir: Path) -> list[dict[str, Any]]:
    from lvwlib.core.config import replace
    from lvwlib.experiment import stages
    from lvwlib.experiment.config import experiment_from_params
    from lvwlib.methods.lvw import build_network

    exp = experiment_from_params(load_params(ROOT / "params" / "default.yaml"), "imagenette")
    run = replace(
        exp.run,
        data={"root": args.data_root, "max_per_class": args.lvw_train_per_class,
              "max_test_per_class": args.lvw_test_per_class},
        cache_dir=str(cache_dir),
        num_workers=args.workers[-1],
    )
    exp = dataclasses.replace(exp, run=run, seeds=(0,))
    prep = stages.prepare(exp, progress=False)
    base = stages.base_for_seed(prep, 0, progress=False)
    m = exp.run.eval.top_m

    epoch_seconds: list[tuple[float, float]] = []  # (wall, user CPU) of each joint epoch
    original = lvw_train._train_epoch

    def timed_epoch(*a: Any, **k: Any) -> dict[str, Any]:
        row, wall, cpu = measure(lambda: original(*a, **k))
        if not a[4]:  # the `warm` argument (model, source, cfg, optimiser, warm, ...): time joint epochs only
            epoch_seconds.append((wall, cpu))
        return row

    rows: list[dict[str, Any]] = []
    lvw_train._train_epoch = timed_epoch
    try:
        for align in (56, 224):
            cfg = dataclasses.replace(
                exp.run.lvw, align_size=align, warm_epochs=args.warm_epochs,
                joint_epochs=args.joint_epochs, push_every=args.joint_epochs, seed=0,
            )
            epoch_seconds.clear()
            seed_everything(0)
            tail = base.model.tail if cfg.tail_init == "base" else prep.backbone.tail
            model = build_network(copy.deepcopy(tail), prep.backbone.feature_channels, prep.num_classes, cfg)
            lvw_train.train_prototype_net(
                model, prep.train_feats, prep.train_labels, base.train_cams, cfg, progress=False
            )
            result = stages.evaluate(lambda x, index, split, model=model: model.explain(x, m), prep, base)
            rows.append({
                "align_size": align,
                "s / joint epoch": sum(w for w, _ in epoch_seconds) / len(epoch_seconds),
                "user CPU s / joint epoch": sum(c for _, c in epoch_seconds) / len(epoch_seconds),
                "test accuracy": result["accuracy"],
                "test IoU": result["iou"],
            })
    finally:
        lvw_train._train_epoch = original
    small, big = rows
    rows.append({
        "align_size": "56 vs 224",
        "s / joint epoch": small["s / joint epoch"] / big["s / joint epoch"],
        "user CPU s / joint epoch": small["user CPU s / joint epoch"] / big["user CPU s / joint epoch"],
        "test accuracy": small["test accuracy"] - big["test accuracy"],
        "test IoU": small["test IoU"] - big["test IoU"],
    })
    print(f"\n### LVW alignment size: imagenette {len(prep.train_labels)} train / "
          f"{len(prep.test_labels)} test images, {args.warm_epochs} warm-up + "
          f"{args.joint_epochs} joint epochs, seed 0 (last row: time ratio, differences)\n")
    print(markdown(rows))
    return rows


# --------------------------------------------------------------------------- 3. Grad-CAM


def bench_gradcam(n: int) -> list[dict[str, Any]]:
    backbone = build_backbone(BackboneConfig(runtime="eager"))
    feats = torch.randn(n, 2, backbone.trunk_channels, 7, 7).half()
    base = BaseModel(backbone.tail, backbone.feature_channels, 10)
    _, wall, cpu = measure(lambda: gradcam_maps(base, feats, progress=False))
    rows = [{"step": "Grad-CAM (orig+flip)", "images/s": n / wall, "user CPU ms/image": 1e3 * cpu / n}]
    print(f"\n### Grad-CAM: {n} random trunk features\n")
    print(markdown(rows))
    return rows


# --------------------------------------------------------------------------- 4. evaluation


def bench_eval(n: int, m: int = 10) -> list[dict[str, Any]]:
    """IoU of ``n`` images with ``m`` words at every q and both variants: sweep vs per-metric calls."""
    from lvwlib.core.config import EvalConfig
    from lvwlib.core.metrics import iou_coverage, iou_sweep

    ev = EvalConfig()
    qs = sorted({*ev.quantiles, ev.quantile})
    g = torch.Generator().manual_seed(0)
    cams, maps = torch.rand(n, 7, 7, generator=g), torch.rand(n, m, 7, 7, generator=g)
    calls = [(v, q) for v in ("paper", "reference") for q in qs]
    per_call, t_calls, _ = measure(
        lambda: {(v, q): iou_coverage(cams, maps, q, ev.eval_size, v) for v, q in calls}
    )
    sweep, t_sweep, _ = measure(lambda: iou_sweep(cams, maps, qs, ev.eval_size))
    equal = all(torch.equal(sweep[c], per_call[c]) for c in calls)
    rows = [{"images": n, "metric calls s": t_calls, "sweep s": t_sweep, "ratio": t_calls / t_sweep, "equal": equal}]
    print("\n## IoU evaluation of one split (5 q x 2 variants, 224 px)\n\n" + markdown(rows), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200, help="real images for the trunk benchmark")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="num_workers values")
    parser.add_argument("--threads", type=int, default=2, help="torch (and ONNX Runtime) threads")
    parser.add_argument("--data-root", default="/work/shared/datasets/imagenette",
                        help="the imagenette class folders")
    # LVW's cross-entropy stays near ln C for the first ~5 joint epochs (docs/choices.md):
    # fewer epochs than this compare two untrained models.
    parser.add_argument("--lvw-train-per-class", type=int, default=30)
    parser.add_argument("--lvw-test-per-class", type=int, default=10)
    parser.add_argument("--warm-epochs", type=int, default=5)
    parser.add_argument("--joint-epochs", type=int, default=10)
    parser.add_argument("--cache-dir", default=None,
                        help="cache for the LVW section's features and base model (default: a temporary folder)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["trunk", "lvw", "gradcam", "eval"])
    parser.add_argument("--json", default=None, help="also write the rows to this json file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("LVW_SKIP_HASH", "1")  # sizes are still checked; hashing is not timed here
    out: dict[str, Any] = {"threads": args.threads, "cpus": os.cpu_count()}
    if "trunk" not in args.skip:
        out["trunk"] = bench_trunk(args)
    if "lvw" not in args.skip:
        if args.cache_dir:
            out["lvw"] = bench_lvw(args, Path(args.cache_dir))
        else:
            with tempfile.TemporaryDirectory() as tmp:
                out["lvw"] = bench_lvw(args, Path(tmp))
    if "gradcam" not in args.skip:
        out["gradcam"] = bench_gradcam(64)
    if "eval" not in args.skip:
        out["eval"] = bench_eval(200)
    if args.json:
        write_json(args.json, out)


if __name__ == "__main__":
    main()
