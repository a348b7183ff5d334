"""The stages of an experiment: data -> cached trunk features -> base model and Grad-CAM ->
each registered method -> accuracy and IoU coverage.

    prep = prepare(exp)                         # data, backbone, cached trunk features
    base = base_for_seed(prep, seed)            # base model of the seed and its Grad-CAM maps
    row = run_method(prep, base, "lvw", seed)   # train (or load) and evaluate one Table 1 row

Every expensive artefact is cached under the key :mod:`lvwlib.experiment.keys` builds;
nothing here names a method: what a method is comes from :mod:`lvwlib.methods`. The
same stages run in one process (the runner's cells, notebooks) and in every process
of a torchrun job (:mod:`lvwlib.experiment.launch`): there all ranks train together
(PyTorch DDP), rank 0 writes the cache, evaluates and stores the trained model, so
a model trained on GPUs opens like any other with :func:`lvwlib.experiment.models.load_model`.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lvwlib.backbones.split import SplitBackbone, build_backbone
from lvwlib.backbones.trunk_features import (
    check_runtime,
    compute_trunk_features,
    trunk_onnx_inputs,
    trunk_onnx_path,
)
from lvwlib.core import distributed as dist
from lvwlib.core.base_model import BaseModel
from lvwlib.core.batches import CachedSource
from lvwlib.core.devices import CPU, Runtime, resolve_device
from lvwlib.core.gradcam import gradcam_maps, train_base_model
from lvwlib.core.seeding import seed_everything
from lvwlib.core.streaming import StreamingSource, use_streaming
from lvwlib.data import DatasetBundle, load_dataset
from lvwlib.experiment import keys, models
from lvwlib.experiment.config import Experiment
from lvwlib.experiment.evaluate import EVAL_BATCH, Explainer, evaluate_batches
from lvwlib.methods import registry
from lvwlib.methods.registry import FitContext, Fitted, Needed
from lvwlib.store.cache import cached, cached_together
from lvwlib.store.paths import resolve
from lvwlib.store.records import remove_stale_temporaries


@dataclass
class Prepared:
    """Data, backbone and cached trunk features of one dataset (seed independent).

    A streaming run (``tail: all``) has no feature tensors: its batches are images
    decoded on the fly (:meth:`source`).
    """

    exp: Experiment
    bundle: DatasetBundle
    backbone: SplitBackbone
    train_feats: torch.Tensor | None  # [N, 2, Ct, h, w] float16; None when streaming
    train_labels: torch.Tensor  # [N]
    test_feats: torch.Tensor | None  # [Nt, 2, Ct, h, w] float16
    test_labels: torch.Tensor  # [Nt]
    feature_inputs: dict[str, Any]  # the cache inputs the features depend on
    val_feats: torch.Tensor | None = None  # [Nv, 2, Ct, h, w] float16; None without a validation split
    val_labels: torch.Tensor | None = None  # [Nv]
    runtime: Runtime = CPU  # device and autocast of every model, loss, push, Grad-CAM and metric of the run
    streaming: bool = False  # images streamed through the whole backbone, no feature cache

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits of the data: train, val (when there is one), test."""
        return ("train", "val", "test") if self.val_labels is not None else ("train", "test")

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(features [N, 2, Ct, h, w], labels [N]) of ``train``, ``val`` or ``test``."""
        if self.streaming:
            raise ValueError("this run streams its images (backbone.tail: all or streaming: on): there are no "
                             "cached trunk features; set streaming: off, or a method that trains from batch sources")
        feats, labels = getattr(self, f"{name}_feats", None), getattr(self, f"{name}_labels", None)
        if feats is None or labels is None:
            raise ValueError(f"no {name!r} split (data.val_fraction is 0?); splits: {', '.join(self.splits)}")
        return feats, labels

    def labels(self, name: str) -> torch.Tensor:
        labels = getattr(self, f"{name}_labels", None)
        if labels is None:
            raise ValueError(f"no {name!r} split (data.val_fraction is 0?); splits: {', '.join(self.splits)}")
        return labels

    def source(self, split: str, cams: torch.Tensor | None = None, shard: bool = True) -> Any:
        """A batch source of ``split`` on the run's device, with Grad-CAM maps [N, 2, hc, wc] or None.

        ``shard``: under torchrun, this rank's share of every global batch (False: all images).
        """
        rank, world = (dist.rank(), dist.world_size()) if shard else (0, 1)
        if self.streaming:
            images = getattr(self.bundle, split)
            return StreamingSource(images, self.backbone.trunk, cams, self.runtime.device,
                                   self.exp.run.num_workers, rank, world)
        feats, labels = self.split(split)
        return CachedSource(feats, labels, cams, self.runtime.device, rank, world)

    @property
    def cache_dir(self) -> Path:
        return resolve(self.exp.run.cache_dir)

    @property
    def num_classes(self) -> int:
        return len(self.bundle.classes)


@dataclass
class BaseArtefacts:
    """The base model of one seed and its Grad-CAM maps."""

    model: BaseModel
    history: list[dict[str, float]]
    train_cams: torch.Tensor  # [N, 2, h, w] in [0, 1]
    test_cams: torch.Tensor  # [Nt, 2, h, w]
    inputs: dict[str, Any]  # cache inputs of the Grad-CAM maps (every method's key builds on them)
    val_cams: torch.Tensor | None = None  # [Nv, 2, h, w]; None without a validation split

    def cams(self, split: str) -> torch.Tensor:
        """Grad-CAM maps [N, 2, h, w] of ``train``, ``val`` or ``test``."""
        maps = getattr(self, f"{split}_cams", None)
        if maps is None:
            raise ValueError(f"no Grad-CAM maps for split {split!r}")
        return maps


# --------------------------------------------------------------------------- torchrun


def _main_first(compute: Callable[[], Any]) -> Any:
    """Rank 0 computes (or loads) and stores; the other ranks wait, then load what it wrote."""
    if not dist.active():
        return compute()
    if dist.is_main():
        value = compute()
        dist.barrier()
        return value
    dist.barrier()
    return compute()


def _cached(cache_dir: Path, kind: str, inputs: dict[str, Any], compute: Callable[[], Any]) -> Any:
    """:func:`lvwlib.store.cache.cached`, also for a value every torchrun rank computes together.

    Under torchrun rank 0 decides whether the entry exists; on a miss all ranks
    compute (DDP training), rank 0 stores, and the others wait for it.
    """
    if not dist.active():
        return cached(cache_dir, kind, inputs, compute)
    if dist.broadcast_flag(keys.entry_path(cache_dir, kind, inputs).exists()):
        return cached(cache_dir, kind, inputs, compute)  # every rank loads it
    value = compute()  # all ranks together; the results are identical on every rank
    if dist.is_main():
        cached(cache_dir, kind, inputs, lambda: value)
    dist.barrier()
    return value


# --------------------------------------------------------------------------- stages


def prepare(exp: Experiment, progress: bool = True, runtime: Runtime | None = None) -> Prepared:
    """Load the dataset and backbone; compute or load the cached trunk features.

    Args:
        runtime: device and autocast (default: the config's; under torchrun each rank's own GPU).
    """
    torch.set_grad_enabled(True)
    run = exp.run
    runtime = runtime if runtime is not None else Runtime(dist.local_device(resolve_device(run.device)), run.amp)
    bundle = load_dataset(run.data)
    backbone = build_backbone(run.backbone)
    inputs = keys.feature_inputs(exp, bundle)
    cache_dir = resolve(run.cache_dir)
    streaming = use_streaming(run)
    labels = {split: torch.tensor(getattr(bundle, split).labels)
              for split in ("train", "test", "val") if getattr(bundle, split) is not None}
    feats: dict[str, torch.Tensor] = {}
    if not streaming:
        check_runtime(run.backbone.runtime)  # also when every feature is cached already
        onnx_path = trunk_onnx_path(cache_dir, run.backbone, run.data.image_size)
        onnx_inputs = trunk_onnx_inputs(run.backbone, run.data.image_size)

        def features(split: str) -> Callable[[], torch.Tensor]:
            dataset = getattr(bundle, split)
            return lambda: compute_trunk_features(
                backbone.trunk, dataset, num_workers=run.num_workers,
                desc=f"trunk features ({run.data.name} {split})", progress=progress,
                runtime=run.backbone.runtime, onnx_path=onnx_path, onnx_inputs=onnx_inputs,
            )

        splits = tuple(labels)  # train, test (, val)

        def compute() -> list[torch.Tensor]:
            # Temporary files of a killed earlier run (their writer's pid is gone) are removed.
            remove_stale_temporaries(cache_dir)
            # Every split is computed before any is stored: an unreadable test image
            # then fails the run before anything is written.
            return cached_together(
                cache_dir, "features", [keys.split_inputs(inputs, split) for split in splits],
                [features(split) for split in splits],
            )

        feats = dict(zip(splits, _main_first(compute), strict=True))
    return Prepared(
        exp, bundle, backbone, feats.get("train"), labels["train"], feats.get("test"), labels["test"], inputs,
        feats.get("val"), labels.get("val"), runtime=runtime, streaming=streaming,
    )


def base_for_seed(prep: Prepared, seed: int, progress: bool = True) -> BaseArtefacts:
    """Train (or load) the base model of ``seed`` and its Grad-CAM maps of every split."""
    base_cfg = dataclasses.replace(prep.exp.run.base, seed=seed)
    model_inputs, cam_inputs = keys.base_inputs(prep.exp, prep.feature_inputs, seed)
    runtime = prep.runtime

    def train() -> dict[str, Any]:
        model, history = train_base_model(
            prep.backbone.tail, prep.backbone.feature_channels, prep.num_classes,
            prep.source("train"), None, base_cfg, progress=progress, runtime=runtime,
        )
        return {"state_dict": {k: v.cpu() for k, v in model.state_dict().items()}, "history": history}

    stored = _cached(prep.cache_dir, "base_model", model_inputs, train)
    model = BaseModel(copy.deepcopy(prep.backbone.tail), prep.backbone.feature_channels, prep.num_classes)
    model.load_state_dict(stored["state_dict"])
    model.to(runtime.device).eval()

    def cams() -> dict[str, torch.Tensor]:
        # streamed images: maps at the tail's resolution (7 x 7 numbers, not 224 x 224, per map)
        return {
            split: gradcam_maps(model, prep.source(split), None, base_cfg.cam_target, progress=progress,
                                runtime=runtime, at_layer_resolution=prep.streaming)
            for split in prep.splits
        }

    maps = _cached(prep.cache_dir, "gradcam", cam_inputs, cams)
    return BaseArtefacts(model, stored["history"], maps["train"], maps["test"], cam_inputs, maps.get("val"))


def fit_context(
    prep: Prepared, base: BaseArtefacts, method: str, seed: int, progress: bool = True,
    needed: dict[str, Needed] | None = None,
) -> FitContext:
    """What ``method``'s fit gets for ``seed``: its settings, the data, the base model and maps."""
    inputs = keys.method_inputs(prep.exp, base.inputs, method, seed)
    return FitContext(
        seed=seed,
        settings=keys.method_settings(prep.exp, method, seed),
        num_classes=prep.num_classes,
        feature_channels=prep.backbone.feature_channels,
        imagenet_tail=prep.backbone.tail,
        base_model=base.model,
        runtime=prep.runtime,
        checkpoint=keys.entry_path(prep.cache_dir, keys.CHECKPOINT_KIND, inputs),
        progress=progress,
        data=prep.split,
        source=lambda with_cams: prep.source("train", base.train_cams if with_cams else None),
        cams=base.cams,
        needed=needed or {},
    )


def fit_method(prep: Prepared, base: BaseArtefacts, method: str, seed: int, progress: bool = True) -> Fitted:
    """Train (or resume / load from its checkpoint) ``method`` for ``seed``; first what it needs.

    Raises:
        ValueError: an unknown method, or one that needs cached feature tensors in a run that
            has none (streamed images) or under torchrun.
    """
    spec = registry.get(method)
    if (dist.active() or prep.streaming) and not spec.streams:
        able = [n for n in registry.names() if registry.get(n).streams]
        raise ValueError(
            f"{spec.label} trains on cached feature tensors in one process: not under torchrun nor on streamed "
            f"images (backbone.tail: all); these can: {', '.join(able)}"
        )
    needed = {n: Needed(fit_method(prep, base, n, seed, progress), keys.method_settings(prep.exp, n, seed))
              for n in spec.needs}
    return spec.fit(fit_context(prep, base, method, seed, progress, needed))


def explainer(method: str, fitted: Fitted, m: int) -> Explainer:
    """How the Table 1 evaluation explains with a fitted ``method``: (x, index, split) -> (logits, maps)."""
    if fitted.evaluate is not None:
        return fitted.evaluate
    spec = registry.get(method)
    return lambda x, index, split: spec.explain(fitted.module, x, m)[:2]


def evaluate(explain: Explainer, prep: Prepared, base: BaseArtefacts, split: str = "test",
             batch_size: int = EVAL_BATCH) -> dict[str, Any]:
    """Accuracy and IoU coverage of an explainer on the (unflipped) images of ``split``
    (:func:`lvwlib.experiment.evaluate.evaluate_batches`); every image, also under torchrun."""
    source = prep.source(split, shard=False)
    batches = ((b.x, b.index) for b in source.ordered_batches(batch_size, flips=(0,)))
    return evaluate_batches(explain, batches, base.cams(split), source.labels, prep.exp.run.eval,
                            prep.runtime.device, split)


def _store(prep: Prepared, inputs: dict[str, Any], fitted: Fitted) -> Path:
    return models.store_model(
        prep.cache_dir, inputs, fitted, dataset=prep.exp.run.data.name, classes=list(prep.bundle.classes),
        feature_channels=prep.backbone.feature_channels,
    )


def _result(prep: Prepared, base: BaseArtefacts, method: str, seed: int, fitted: Fitted) -> dict[str, Any]:
    """The Table 1 row of a fitted method: test metrics, validation metrics, its extra fields."""
    explain = explainer(method, fitted, prep.exp.run.eval.top_m)
    result = evaluate(explain, prep, base)
    if prep.val_labels is not None:
        # Validation numbers, for every choice of defaults; test stays for reporting.
        val = evaluate(explain, prep, base, split="val")
        result["val"] = {k: v for k, v in val.items() if k != "per_image_iou"}
    result.update(method=method, seed=seed, **fitted.extra)
    return result


def run_method(
    prep: Prepared, base: BaseArtefacts, method: str, seed: int, progress: bool = True
) -> dict[str, Any] | None:
    """Train (or load) ``method`` for ``seed``, store its model and evaluate it; the result dict is cached.

    Under torchrun every rank trains, rank 0 stores and evaluates: rank 0 gets the
    result, the other ranks None.
    """
    inputs = keys.method_inputs(prep.exp, base.inputs, method, seed)
    result_inputs = keys.result_inputs(inputs)
    stored = models.model_path(prep.cache_dir, inputs)

    def fit() -> Fitted:
        seed_everything(seed)
        return fit_method(prep, base, method, seed, progress)

    def fit_store_evaluate() -> dict[str, Any]:
        fitted = fit()
        _store(prep, inputs, fitted)
        return _result(prep, base, method, seed, fitted)

    if not dist.active():
        result = cached(prep.cache_dir, keys.RESULT_KIND, result_inputs, fit_store_evaluate)
        if not stored.exists():
            # a result without its model (deleted, or cached before models were stored):
            # fit again (resumable training loads its checkpoint) to store it
            _store(prep, inputs, fit())
        return result
    done = keys.entry_path(prep.cache_dir, keys.RESULT_KIND, result_inputs).exists() and stored.exists()
    result = None
    if dist.broadcast_flag(done):
        if dist.is_main():
            result = cached(prep.cache_dir, keys.RESULT_KIND, result_inputs, fit_store_evaluate)
    else:
        fitted = fit()  # every rank: DDP training
        if dist.is_main():
            _store(prep, inputs, fitted)
            result = cached(prep.cache_dir, keys.RESULT_KIND, result_inputs,
                            lambda: _result(prep, base, method, seed, fitted))
    dist.barrier()
    return result
