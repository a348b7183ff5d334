"""Command-line runs of the prototype-network rows on one or several GPUs (or CPU processes).

One process::

    python -m lvwlib.experiment.launch --params params/paper.yaml --dataset stl10 --out results/launch/stl10.json

Several (one process per GPU, PyTorch DDP; gloo on the CPU)::

    torchrun --nproc_per_node 4 -m lvwlib.experiment.launch --params params/paper.yaml --dataset stl10 --out ...

It trains the base model, its Grad-CAM maps, then each of ``--methods`` (base,
lvw, lvw_noalign, protopnet) for every seed, and evaluates accuracy and IoU
coverage; rank 0 writes the json (and every checkpoint). Data come from the
feature cache (``tail`` other than ``all``) or stream from the images
(:mod:`lvwlib.core.streaming`, ``tail: all``). The other Table 1 rows (ProtoTree,
ProtoPShare, SRAE) run in the notebooks / :mod:`lvwlib.experiment.pipeline` in one process.
Artefacts are cached like the pipeline's (``cache_dir``); an interrupted run
resumes from its per-epoch checkpoint.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml

from lvwlib.backbones.split import build_backbone
from lvwlib.backbones.trunk_features import compute_trunk_features
from lvwlib.core import distributed as dist
from lvwlib.core.base_model import BaseModel
from lvwlib.core.batches import CachedSource
from lvwlib.core.config import load_params, to_dict
from lvwlib.core.devices import Runtime, resolve_device
from lvwlib.core.gradcam import gradcam_maps, train_base_model
from lvwlib.core.model import PrototypeNet
from lvwlib.core.seeding import seed_everything
from lvwlib.core.streaming import StreamingSource, use_streaming
from lvwlib.core.train import train_prototype_net
from lvwlib.data import load_dataset
from lvwlib.experiment.pipeline import (
    Experiment,
    evaluate_batches,
    experiment_from_params,
    lvw_config,
    resolve,
)
from lvwlib.store.cache import cache_key, cached
from lvwlib.store.records import write_json

LAUNCH_METHODS = ("base", "lvw", "lvw_noalign", "protopnet")


def collective_cached(cache_dir: Path, kind: str, inputs: dict[str, Any], compute: Callable[[], Any]) -> Any:
    """:func:`lvwlib.store.cache.cached` for a value every rank computes together (DDP training).

    Rank 0 decides whether the entry exists; on a miss all ranks compute, rank 0
    stores, and the others wait for it.
    """
    if not dist.active():
        return cached(cache_dir, kind, inputs, compute)
    exists = dist.broadcast_flag((cache_dir / kind / f"{cache_key(inputs)}.pt").exists())
    if exists:
        return cached(cache_dir, kind, inputs, compute)  # every rank loads it
    value = compute()  # all ranks together; the results are identical on every rank
    if dist.is_main():
        cached(cache_dir, kind, inputs, lambda: value)
    dist.barrier()
    return value


def main_only_cached(cache_dir: Path, kind: str, inputs: dict[str, Any], compute: Callable[[], Any]) -> Any:
    """Rank 0 computes (or loads) and stores; the others wait and load it."""
    if dist.is_main():
        value = cached(cache_dir, kind, inputs, compute)
        dist.barrier()
        return value
    dist.barrier()
    return cached(cache_dir, kind, inputs, compute)


def run(exp: Experiment, methods: tuple[str, ...], runtime: Runtime, progress: bool = False) -> list[dict[str, Any]]:
    """Every method of ``methods`` for every seed of ``exp``; rows as the pipeline's (rank 0's are complete)."""
    bad = [m for m in methods if m not in LAUNCH_METHODS]
    if bad:
        raise ValueError(f"lvwlib.experiment.launch runs {', '.join(LAUNCH_METHODS)}; not {bad} (use the notebooks)")
    torch.set_grad_enabled(True)
    run_cfg = exp.run
    rank, world = dist.rank(), dist.world_size()
    bundle = load_dataset(run_cfg.data)
    backbone = build_backbone(run_cfg.backbone)
    cache_dir = resolve(run_cfg.cache_dir)
    streaming = use_streaming(run_cfg)
    inputs: dict[str, Any] = {
        "data": to_dict(run_cfg.data), "fingerprint": bundle.fingerprint(), "backbone": to_dict(run_cfg.backbone),
    }
    train_labels = torch.tensor(bundle.train.labels)
    test_labels = torch.tensor(bundle.test.labels)
    if streaming:
        inputs["streaming"] = True  # float32 images, not the float16 cache: other numbers, other keys

        def train_source(cams: torch.Tensor | None, shard: bool = True):
            r, w = (rank, world) if shard else (0, 1)
            return StreamingSource(bundle.train, backbone.trunk, cams, runtime.device, run_cfg.num_workers, r, w)

        def test_source(shard: bool = True):
            r, w = (rank, world) if shard else (0, 1)
            return StreamingSource(bundle.test, backbone.trunk, None, runtime.device, run_cfg.num_workers, r, w)
    else:
        feats = {
            split: main_only_cached(cache_dir, "features", {**inputs, "split": split}, lambda s=split: compute_trunk_features(
                backbone.trunk, getattr(bundle, s), num_workers=run_cfg.num_workers, progress=progress))
            for split in ("train", "test")
        }

        def train_source(cams: torch.Tensor | None, shard: bool = True):
            r, w = (rank, world) if shard else (0, 1)
            return CachedSource(feats["train"], train_labels, cams, runtime.device, r, w)

        def test_source(shard: bool = True):
            r, w = (rank, world) if shard else (0, 1)
            return CachedSource(feats["test"], test_labels, None, runtime.device, r, w)

    rows = []
    for seed in exp.seeds:
        base_cfg = dataclasses.replace(run_cfg.base, seed=seed)
        model_inputs = {**inputs, "base": {k: v for k, v in to_dict(base_cfg).items() if k != "cam_target"}}
        if runtime.amp_active:
            model_inputs["amp"] = runtime.amp

        def train_base(base_cfg=base_cfg) -> dict[str, Any]:
            model, history = train_base_model(
                backbone.tail, backbone.feature_channels, len(bundle.classes), train_source(None), None,
                base_cfg, progress=progress, runtime=runtime,
            )
            return {"state_dict": {k: v.cpu() for k, v in model.state_dict().items()}, "history": history}

        stored = collective_cached(cache_dir, "base_model", model_inputs, train_base)
        base = BaseModel(copy.deepcopy(backbone.tail), backbone.feature_channels, len(bundle.classes))
        base.load_state_dict(stored["state_dict"])
        base.to(runtime.device).eval()
        cam_inputs = {**model_inputs, "cam_target": base_cfg.cam_target}

        def cams(base=base, base_cfg=base_cfg) -> dict[str, torch.Tensor]:
            return {
                split: gradcam_maps(base, source, None, base_cfg.cam_target, progress=progress, runtime=runtime,
                                    at_layer_resolution=streaming)
                for split, source in (("train", train_source(None)), ("test", test_source()))
            }

        maps = collective_cached(cache_dir, "gradcam", cam_inputs, cams)
        for method in methods:
            result = _run_method(method, seed, exp, backbone, base, maps, cam_inputs, train_source, test_source,
                                 cache_dir, runtime, progress)
            if result is not None:
                rows.append(result)
    return rows


def _run_method(method, seed, exp, backbone, base, maps, cam_inputs, train_source, test_source, cache_dir,
                runtime, progress) -> dict[str, Any] | None:
    extra: dict[str, Any] = {}
    if method == "base":
        def explain(x, index):
            return base(x), maps["test"][index, 0][:, None].to(x.device)
        model: torch.nn.Module = base
    else:
        cfg = lvw_config(exp, method, seed)
        ckpt = cache_dir / "models" / f"{cache_key({**cam_inputs, 'method': method, 'seed': seed, 'lvw': to_dict(cfg)})}.pt"
        seed_everything(seed)
        net = PrototypeNet(
            copy.deepcopy(base.tail if cfg.tail_init == "base" else backbone.tail), backbone.feature_channels,
            base.classifier.out_features, cfg.words_per_class, cfg.feature_dim, seed=cfg.seed,
        )
        source = train_source(maps["train"] if cfg.beta_align > 0 else None)
        state = train_prototype_net(net, source, None, None, cfg, checkpoint=ckpt, progress=progress, runtime=runtime)
        extra = {"history": state.history, "push": state.pushes[-1] if state.pushes else [],
                 "num_words": net.num_words, "words": net.words.detach().cpu().tolist()}
        m = exp.run.eval.top_m

        def explain(x, index):
            return net.explain(x, m)
        model = net
    result = None
    if dist.is_main():  # rank 0 evaluates on the whole test set
        model.eval()
        with torch.no_grad(), runtime.autocast():
            batches = ((b.x, b.index) for b in test_source(shard=False).ordered_batches(50, flips=(0,)))
            result = evaluate_batches(explain, batches, maps["test"], test_source(shard=False).labels,
                                      exp.run.eval, runtime.device)
        result.update(method=method, seed=seed, world_size=dist.world_size(), **extra)
    dist.barrier()
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", required=True, help="parameter yaml (params/*.yaml)")
    parser.add_argument("--dataset", default=None, help="dataset name (applies the params' per-dataset overrides)")
    parser.add_argument("--methods", default="base,lvw", help=f"comma-separated, of {', '.join(LAUNCH_METHODS)}")
    parser.add_argument("--out", required=True, help="json file of result rows (written by rank 0)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a top-level or nested field, e.g. --set cache_dir=/tmp/c --set lvw.batch_size=8")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)
    params = load_params(args.params)
    for item in args.set:
        key, _, value = item.partition("=")
        target = params
        *parents, leaf = key.split(".")
        for p in parents:
            target = target.setdefault(p, {})
        target[leaf] = yaml.safe_load(value)
    exp = experiment_from_params(params, args.dataset)
    device = resolve_device(exp.run.device)
    dist.init_from_env(device)
    runtime = Runtime(dist.local_device(device), exp.run.amp)
    try:
        rows = run(exp, tuple(args.methods.split(",")), runtime, progress=args.progress)
        if dist.is_main():
            write_json(args.out, {"experiment": exp.to_dict(), "world_size": dist.world_size(), "rows": rows})
    finally:
        dist.shutdown()


if __name__ == "__main__":
    main()
