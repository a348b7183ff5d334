"""Trainer benchmark: every registered method's training step against this machine's fp32 peak.

    .venv/bin/python benchmarks/trainer_benchmark.py --threads 1 [--out table.md]   # ~2-3 minutes

For every method of :mod:`lvwlib.methods.registry` (the reference row: the base model's
training, :func:`lvwlib.core.gradcam.train_base_model`, which its ``fit`` takes over) the
method's own ``fit`` runs at the default settings (``params/default.yaml``) on inputs of the
cached-feature shape, and is stopped after a few optimiser steps: a global optimiser step
hook times ``--steps`` steps after ``--warmup`` untimed ones (the interval between two
``step`` calls is one whole iteration: batch, forward, backward, update and whatever the
method does per batch, e.g. ProtoTree's leaf update), then counts the FLOPs of one more
iteration with :class:`torch.utils.flop_counter.FlopCounterMode` (matrix products and
convolutions only) and stops the fit. Images per second = the settings' batch size / the
mean step time; the epoch time is extrapolated from it to N images (an epoch is not run).
Methods with a warm-up stage (tail frozen) also get a row with ``warm_epochs = 0``: the
joint stage's step. A method whose fit does work before its first optimiser step shows it in
the last column (ProtoPShare: word descriptors, pair search and push of its first merge step;
its optimiser steps are only the last-layer fine-tuning on cached word scores). A method that
needs another (ProtoPShare on ProtoPNet) gets an untrained model of it: the work is the same.

Inputs: the cached trunk features of a train split when the cache (``--cache``, default
the params' ``cache_dir``) holds one of the params' backbone, else random float16 tensors
of the trunk's output shape for a 10-class dataset of ``--images`` (1,000) images; the
table's caption says which. Labels are synthetic (image i has class i mod C) and the
Grad-CAM maps random: neither changes the amount of work.

The peak: the best of several ``torch.mm`` of two 4096 x 4096 float32 matrices on the same
thread count (2 n^3 FLOPs each). Ratio = achieved FLOP/s (counted FLOPs x steps/s) / peak.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook
from torch.utils.flop_counter import FlopCounterMode

import lvwlib.methods  # noqa: F401  (registers the built-in methods)
from lvwlib.backbones.split import build_backbone
from lvwlib.core.base_model import BaseModel
from lvwlib.core.batches import CachedSource
from lvwlib.core.devices import CPU
from lvwlib.core.gradcam import train_base_model
from lvwlib.experiment.config import load_experiment
from lvwlib.experiment.keys import method_settings
from lvwlib.methods import registry
from lvwlib.methods.lvw import build_network
from lvwlib.methods.registry import FitContext, Fitted, Needed
from lvwlib.store.paths import resolve
from lvwlib.store.records import save_with

ROOT = Path(__file__).resolve().parents[1]


class _Stop(Exception):
    """Raised from the step hook once the steps are measured: ends the fit early."""


@dataclasses.dataclass
class Measure:
    """What one benchmarked fit gave: step times (s), FLOPs of one iteration, setup time (s)."""

    setup_s: float = 0.0
    step_s: list[float] = dataclasses.field(default_factory=list)
    flops: int = 0
    steps_seen: int = 0


def measure_fit(fit: Callable[[], Any], warmup: int, steps: int) -> Measure:
    """Run ``fit`` until ``warmup + steps + 1`` optimiser steps have happened (then stop it).

    The hook fires before every ``Optimizer.step``: iteration i spans the pre-hooks of
    steps i and i + 1. Iterations warmup+1 .. warmup+steps are timed; the next one runs
    under FlopCounterMode.
    """
    m = Measure()
    start = time.perf_counter()
    marks: list[float] = []
    counter: list[FlopCounterMode] = []

    def hook(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        m.steps_seen += 1
        now = time.perf_counter()
        if m.steps_seen == 1:
            m.setup_s = now - start
        marks.append(now)
        if m.steps_seen == warmup + steps + 1:
            mode = FlopCounterMode(display=False)
            mode.__enter__()
            counter.append(mode)
        elif m.steps_seen == warmup + steps + 2:
            counter[0].__exit__(None, None, None)
            m.flops = counter[0].get_total_flops()
            raise _Stop

    handle = register_optimizer_step_pre_hook(hook)
    try:
        fit()
    except _Stop:
        pass
    finally:
        handle.remove()
        if counter and not m.flops:  # the fit ended inside the counted iteration
            counter[0].__exit__(None, None, None)
    timed = marks[warmup : warmup + steps + 1]
    m.step_s = [b - a for a, b in zip(timed, timed[1:], strict=False)]
    return m


def matmul_peak(sizes: tuple[int, ...] = (2048, 4096), reps: int = 5) -> float:
    """Best fp32 FLOP/s of ``torch.mm`` of two n x n matrices (2 n^3 FLOPs) on this thread count."""
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.mm(a, b)  # warm-up
        for _ in range(reps):
            t = time.perf_counter()
            torch.mm(a, b)
            best = max(best, 2 * n**3 / (time.perf_counter() - t))
    return best


def cached_train_features(cache_dir: Path, backbone: dict[str, Any], limit: int) -> tuple[torch.Tensor, str] | None:
    """The first cached train-split features of ``backbone`` in ``cache_dir`` ([N, 2, Ct, h, w]), or None."""
    for meta in sorted((cache_dir / "features").glob("*.json")):
        try:
            inputs = json.loads(meta.read_text())["inputs"]
        except (OSError, ValueError, KeyError):
            continue
        same = all(inputs.get("backbone", {}).get(k) == backbone[k] for k in ("name", "tail", "weights"))
        if inputs.get("split") == "train" and same and meta.with_suffix(".pt").exists():
            feats = torch.load(meta.with_suffix(".pt"), map_location="cpu", weights_only=False)
            if isinstance(feats, torch.Tensor) and feats.dim() == 5:
                return feats[:limit], f"cached features of {inputs['data']['name']} ({meta.stem})"
    return None


def inputs(exp: Any, backbone: Any, cache_dir: Path, images: int, classes: int) -> tuple[torch.Tensor, str]:
    """[N, 2, Ct, h, w] float16 features and where they came from."""
    run = exp.run
    found = cached_train_features(cache_dir, dataclasses.asdict(run.backbone), images)
    if found is not None:
        return found
    with torch.no_grad():
        shape = backbone.trunk(torch.zeros(1, 3, run.data.image_size, run.data.image_size)).shape[1:]
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(images, 2, *shape, generator=gen).relu_().half()
    return feats, f"random float16 tensors of the trunk output shape {tuple(shape)}, {images} images, {classes} classes"


def contexts(exp: Any, backbone: Any, feats: torch.Tensor, classes: int, tmp: Path) -> Callable[..., FitContext]:
    """A FitContext factory for any method on the benchmark inputs (random Grad-CAM maps)."""
    n = feats.shape[0]
    labels = torch.arange(n) % classes
    size = exp.run.data.image_size
    cams = torch.rand(n, 2, size, size, generator=torch.Generator().manual_seed(1)).half()
    base = BaseModel(backbone.tail, backbone.feature_channels, classes).eval()

    def make(method: str, settings: dict[str, Any], needed: dict[str, Needed]) -> FitContext:
        return FitContext(
            seed=0, settings=settings, num_classes=classes, feature_channels=backbone.feature_channels,
            imagenet_tail=backbone.tail, base_model=base, runtime=CPU, checkpoint=tmp / f"{method}.ckpt",
            progress=False, data=lambda split: (feats, labels),
            source=lambda with_cams: CachedSource(feats, labels, cams if with_cams else None),
            cams=lambda split: cams, needed=needed,
        )

    return make


def batch_size(settings: dict[str, Any]) -> int | None:
    """The batch size of a method's settings (the first part with a ``batch_size`` field)."""
    for part in settings.values():
        if dataclasses.is_dataclass(part) and hasattr(part, "batch_size"):
            return int(part.batch_size)
    return None


def cases(exp: Any, methods: list[str] | None = None) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, stage, settings) rows: every method at its settings, plus the joint stage of
    methods whose settings have a warm-up stage (``warm_epochs = 0``)."""
    rows = []
    for name in methods or registry.names():
        settings = method_settings(exp, name, 0)
        rows.append((name, "first steps", settings))
        for key, part in settings.items():
            if dataclasses.is_dataclass(part) and getattr(part, "warm_epochs", 0) > 0:
                joint = {**settings, key: dataclasses.replace(part, warm_epochs=0)}
                rows.append((name, "joint (warm_epochs=0)", joint))
    return rows


def run(args: argparse.Namespace) -> str:
    torch.set_num_threads(args.threads)
    exp = load_experiment(args.params, args.dataset)
    try:
        backbone = build_backbone(exp.run.backbone)
    except Exception:  # noqa: BLE001  (offline: the work does not depend on the weights)
        backbone = build_backbone(dataclasses.replace(exp.run.backbone, weights="none"))
    cache_dir = Path(args.cache) if args.cache else resolve(exp.run.cache_dir)
    feats, origin = inputs(exp, backbone, cache_dir, args.images, args.classes)
    n = feats.shape[0]
    peak = matmul_peak()
    tmp = Path(args.tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    make = contexts(exp, backbone, feats, args.classes, tmp)
    untrained: dict[str, Fitted] = {}
    lines = [
        f"Trainer benchmark: {torch.get_num_threads()} torch thread(s), fp32 `torch.mm` peak "
        f"{{peak}} GFLOP/s (best of 2048 and 4096, before and after); inputs: {origin}; {args.params}, seed 0. Each row: {args.warmup} untimed "
        f"+ {args.steps} timed optimiser steps of the method's own fit (stopped there), the epoch time "
        f"extrapolated to {n} images; FLOPs of one step counted by FlopCounterMode (matmuls and convolutions).",
        "",
        "| method | stage | batch | ms / step | images / s | epoch s (extrapolated) | GFLOP / step "
        "| GFLOP/s | % of peak | s before 1st step |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = []
    for name, stage, settings in cases(exp, args.methods):
        spec = registry.get(name)
        for ckpt in tmp.glob("*.ckpt*"):
            ckpt.unlink()
        torch.manual_seed(0)
        if spec.reference:
            bs = exp.run.base.batch_size

            def fit() -> Any:
                return train_base_model(backbone.tail, backbone.feature_channels, args.classes,
                                        CachedSource(feats, torch.arange(n) % args.classes), None,
                                        exp.run.base, progress=False, runtime=CPU)
        else:
            bs = batch_size(settings) or 0
            needed = {}
            for need in spec.needs:  # an untrained model of the needed method (the work is the same)
                if need not in untrained:
                    untrained[need] = _untrained(need, make(need, method_settings(exp, need, 0), {}))
                needed[need] = Needed(untrained[need], method_settings(exp, need, 0))
            ctx = make(name, settings, needed)

            def fit(spec: Any = spec, ctx: FitContext = ctx) -> Any:
                return spec.fit(ctx)

        m = measure_fit(fit, args.warmup, args.steps)
        if not m.step_s:
            print(f"{name} {stage}: the fit took only {m.steps_seen} steps", flush=True)
            continue
        rows.append((name, stage, bs, m))
        print(name, stage, f"{sum(m.step_s) / len(m.step_s) * 1e3:.1f} ms/step", flush=True)
    peak = max(peak, matmul_peak())  # again after the fits: the larger of two, on a shared machine
    lines[0] = lines[0].replace("{peak}", f"{peak / 1e9:.1f}")
    for name, stage, bs, m in rows:
        step = sum(m.step_s) / len(m.step_s)
        gflop = m.flops / 1e9
        lines.append(
            f"| {name} | {stage} | {bs} | {step * 1e3:.1f} | {bs / step:.0f} | {n / (bs / step):.1f} "
            f"| {gflop:.3f} | {gflop / step:.1f} | {100 * m.flops / step / peak:.1f} | {m.setup_s:.2f} |"
        )
    return "\n".join(lines) + "\n"


def _untrained(name: str, ctx: FitContext) -> Fitted:
    """An untrained model of a method another one needs (ProtoPShare merges a ProtoPNet: the
    merge, push and fine-tuning work does not depend on the weights)."""
    if name in ("protopnet", "lvw", "lvw_noalign"):
        cfg = ctx.settings["lvw"]
        model = build_network(ctx.initial_tail(cfg.tail_init), ctx.feature_channels, ctx.num_classes, cfg)
        return Fitted(model.eval())
    raise ValueError(f"the benchmark cannot build an untrained {name!r}: add it to _untrained")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params/default.yaml")
    parser.add_argument("--dataset", default="imagenette")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--images", type=int, default=1000, help="N of the random inputs (and the epoch)")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--methods", nargs="+", help="registered methods to run (default: all)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--cache", help="cache folder to look for real features in (default: the params')")
    parser.add_argument("--tmp", default="/tmp/lvw_trainer_benchmark", help="checkpoints of the stopped fits")
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    args = parser.parse_args()
    table = run(args)
    print(table)
    if args.out is not None:
        save_with(args.out, lambda tmp: Path(tmp).write_text(table))


if __name__ == "__main__":
    main()
