"""Experiment orchestration: data -> cached trunk features -> base model and
Grad-CAM -> every Table 1 method -> accuracy and IoU coverage.

Every expensive artefact is cached under a key made from exactly the config
fields it depends on (:mod:`lvwlib.store.cache`). Notebooks call :func:`prepare`,
:func:`base_for_seed` and :func:`run_method`; nothing here plots.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from lvwlib.backbones.split import SplitBackbone, build_backbone
from lvwlib.backbones.trunk_features import (
    check_runtime,
    compute_trunk_features,
    trunk_onnx_inputs,
    trunk_onnx_path,
)
from lvwlib.core.base_model import BaseModel
from lvwlib.core.config import LVWConfig, RunConfig, load_params, to_dict
from lvwlib.core.devices import Runtime, runtime_from
from lvwlib.core.gradcam import gradcam_maps, train_base_model
from lvwlib.core.metrics import accuracy, iou_sweep
from lvwlib.core.model import PrototypeNet
from lvwlib.core.seeding import seed_everything
from lvwlib.core.train import train_prototype_net
from lvwlib.data import DatasetBundle, load_dataset
from lvwlib.experiment import artefacts
from lvwlib.experiment.schema import ConfigError, check_params, coerce, coerce_partial
from lvwlib.methods.protopshare import ProtoPShareConfig, protopshare
from lvwlib.methods.prototree.tree import ProtoTreeConfig, train_prototree
from lvwlib.methods.srae.model import (
    SRAEConfig,
    faithfulness_metrics,
    orthogonality_metrics,
    train_srae,
)
from lvwlib.store.cache import cache_key, cached, cached_together
from lvwlib.store.fingerprint import code_fingerprint
from lvwlib.store.paths import resolve
from lvwlib.store.records import remove_stale_temporaries

METHODS = ("base", "protopnet", "prototree", "protopshare", "lvw_noalign", "lvw", "srae")
METHOD_LABELS = {
    "base": "Base + Grad-CAM",
    "protopnet": "ProtoPNet",
    "prototree": "ProtoTree",
    "protopshare": "ProtoPShare",
    "lvw_noalign": "LVW w/o alignment",
    "lvw": "LVW",
    "srae": "SRAE",
}
# Version of the metrics in a result dict: results cached before a metric was added are recomputed
# (2: iou_reference_q<q> at every swept quantile). Trained checkpoints are keyed without it.
METRICS_VERSION = 2
# ProtoPNet = the prototype network with class-specific words (method.md section 5);
# these are its defaults, which the params' protopnet section may override.
PROTOPNET_DEFAULTS = {"words_per_class": 10, "class_specific": True, "separation": -0.08, "beta_align": 0.0}

# The code each cached artefact depends on (lvwlib.store.fingerprint follows their imports):
# an edit of any of these modules recomputes the artefact, and only those.
FEATURE_CODE = ("lvwlib.backbones.split", "lvwlib.data", "lvwlib.store.cache", "lvwlib.backbones.trunk_features")
BASE_CODE = ("lvwlib.core.gradcam", "lvwlib.core.base_model")
GRADCAM_CODE = ("lvwlib.core.gradcam", "lvwlib.core.base_model")
METHOD_CODE: dict[str, tuple[str, ...]] = {
    "base": (),
    "protopnet": ("lvwlib.core.train", "lvwlib.core.model"),
    "lvw": ("lvwlib.core.train", "lvwlib.core.model"),
    "lvw_noalign": ("lvwlib.core.train", "lvwlib.core.model"),
    "protopshare": ("lvwlib.core.train", "lvwlib.core.model", "lvwlib.methods.protopshare"),
    "prototree": ("lvwlib.methods.prototree.tree",),
    "srae": ("lvwlib.methods.srae.model",),
}
RESULT_CODE = ("lvwlib.experiment.pipeline", "lvwlib.core.metrics")


@dataclass(frozen=True)
class Experiment:
    """A run's whole configuration: the shared :class:`RunConfig` and each method's."""

    run: RunConfig = field(default_factory=RunConfig)
    protopnet: dict[str, Any] = field(default_factory=dict)  # LVWConfig overrides for ProtoPNet
    prototree: ProtoTreeConfig = field(default_factory=ProtoTreeConfig)
    protopshare: ProtoPShareConfig = field(default_factory=ProtoPShareConfig)
    srae: SRAEConfig = field(default_factory=SRAEConfig)
    seeds: tuple[int, ...] = (0,)  # every Table 1 cell is run once per seed
    methods: tuple[str, ...] = METHODS  # rows of Table 1 to run

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


def experiment_from_params(
    params: dict[str, Any], dataset: str | None = None, source: str | Path | None = None
) -> Experiment:
    """Build an :class:`Experiment` from a params yaml dict, checked first (:mod:`lvwlib.experiment.schema`).

    ``datasets: {name: {...}}`` in the yaml holds per-dataset overrides, merged
    over the top level when ``dataset`` is given (which also sets data.name).
    ``source`` (the file the dict came from) is named in errors.

    Raises:
        ConfigError: unknown keys, wrong types, values outside their set or
            impossible combinations, all listed in one message.
    """
    check_params(params, source)
    params = copy.deepcopy(params)
    per_dataset = params.pop("datasets", {}) or {}
    params.pop("cells", None)  # how cells are run (lvwlib.experiment.cells.CellsConfig): never part of a result
    params.pop("analyses", None)  # the analyses' settings (AnalysesConfig): read by the notebooks, not a result
    if dataset is not None:
        params = _deep_merge(params, per_dataset.get(dataset, {}))
        params.setdefault("data", {})["name"] = dataset
    run_keys = {f.name for f in dataclasses.fields(RunConfig)}
    run = coerce(RunConfig, {k: v for k, v in params.items() if k in run_keys})
    unknown = set(params) - run_keys - {f.name for f in dataclasses.fields(Experiment)}
    if unknown:
        raise ValueError(f"unknown parameter section(s): {', '.join(sorted(unknown))}")
    methods = tuple(params.get("methods", METHODS))
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ValueError(f"methods: unknown method(s) {bad}; known: {', '.join(METHODS)}")
    return Experiment(
        run=run,
        protopnet=dict(coerce_partial(LVWConfig, params.get("protopnet") or {})),
        prototree=coerce(ProtoTreeConfig, params.get("prototree") or {}),
        protopshare=coerce(ProtoPShareConfig, params.get("protopshare") or {}),
        srae=coerce(SRAEConfig, params.get("srae") or {}),
        seeds=tuple(params.get("seeds", (0,))),
        methods=methods,
    )


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@dataclass
class Prepared:
    """Data, backbone and cached trunk features of one dataset (seed independent)."""

    exp: Experiment
    bundle: DatasetBundle
    backbone: SplitBackbone
    train_feats: torch.Tensor  # [N, 2, Ct, h, w] float16
    train_labels: torch.Tensor  # [N]
    test_feats: torch.Tensor  # [Nt, 2, Ct, h, w] float16
    test_labels: torch.Tensor  # [Nt]
    feature_inputs: dict[str, Any]  # the cache inputs the features depend on
    val_feats: torch.Tensor | None = None  # [Nv, 2, Ct, h, w] float16; None without a validation split
    val_labels: torch.Tensor | None = None  # [Nv]

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(features [N, 2, Ct, h, w], labels [N]) of ``train``, ``val`` or ``test``."""
        feats, labels = getattr(self, f"{name}_feats", None), getattr(self, f"{name}_labels", None)
        if feats is None or labels is None:
            raise ValueError(f"no {name!r} split (data.val_fraction is 0?); splits: train, val, test")
        return feats, labels

    @property
    def runtime(self) -> Runtime:
        """Device and autocast of every model, loss, push, Grad-CAM and metric of the run."""
        return runtime_from(self.exp.run.device, self.exp.run.amp)

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
    inputs: dict[str, Any]  # cache inputs of the Grad-CAM maps
    val_cams: torch.Tensor | None = None  # [Nv, 2, h, w]; None without a validation split

    def cams(self, split: str) -> torch.Tensor:
        """Grad-CAM maps [N, 2, h, w] of ``train``, ``val`` or ``test``."""
        maps = getattr(self, f"{split}_cams", None)
        if maps is None:
            raise ValueError(f"no Grad-CAM maps for split {split!r}")
        return maps


def feature_inputs(exp: Experiment, bundle: DatasetBundle | None = None) -> dict[str, Any]:
    """Cache inputs of the trunk features (lists the data when ``bundle`` is None)."""
    run = exp.run
    bundle = bundle if bundle is not None else load_dataset(run.data)
    return {"data": to_dict(run.data), "fingerprint": bundle.fingerprint(), "backbone": to_dict(run.backbone)}


def base_inputs(exp: Experiment, features: dict[str, Any], seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Cache inputs of the base model of ``seed`` and of its Grad-CAM maps."""
    base_cfg = dataclasses.replace(exp.run.base, seed=seed)
    # cam_target only changes the maps, not the model: keep it out of the model's key.
    model_inputs = {**features, "base": {k: v for k, v in to_dict(base_cfg).items() if k != "cam_target"}}
    if exp.run.amp != "none" and runtime_from(exp.run.device, exp.run.amp).amp_active:
        # mixed precision changes the numbers: its artefacts get their own keys
        model_inputs["amp"] = exp.run.amp
    return model_inputs, {**model_inputs, "cam_target": base_cfg.cam_target}


def prepare(exp: Experiment, progress: bool = True) -> Prepared:
    """Load the dataset and backbone; compute or load the cached trunk features."""
    torch.set_grad_enabled(True)
    run = exp.run
    bundle = load_dataset(run.data)
    backbone = build_backbone(run.backbone)
    inputs = feature_inputs(exp, bundle)
    cache_dir = resolve(run.cache_dir)
    code = code_fingerprint(*FEATURE_CODE)
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

    # Temporary files of a killed earlier run (their writer's pid is gone) are removed.
    remove_stale_temporaries(cache_dir)
    # Every split is computed before any is stored: an unreadable test image
    # then fails the run before anything is written.
    splits = ("train", "test", "val") if bundle.val is not None else ("train", "test")
    feats = cached_together(
        cache_dir, "features", [{**inputs, "split": split} for split in splits],
        [features(split) for split in splits], code=code,
    )
    train_feats, test_feats = feats[0], feats[1]
    val_feats = feats[2] if bundle.val is not None else None
    val_labels = torch.tensor(bundle.val.labels) if bundle.val is not None else None
    return Prepared(
        exp, bundle, backbone, train_feats, torch.tensor(bundle.train.labels),
        test_feats, torch.tensor(bundle.test.labels), inputs, val_feats, val_labels,
    )


def base_for_seed(prep: Prepared, seed: int, progress: bool = True) -> BaseArtefacts:
    """Train (or load) the base model of ``seed`` and its Grad-CAM maps."""
    base_cfg = dataclasses.replace(prep.exp.run.base, seed=seed)
    model_inputs, cam_inputs = base_inputs(prep.exp, prep.feature_inputs, seed)
    runtime = prep.runtime

    def train() -> dict[str, Any]:
        model, history = train_base_model(
            prep.backbone.tail, prep.backbone.feature_channels, prep.num_classes,
            prep.train_feats, prep.train_labels, base_cfg, progress=progress, runtime=runtime,
        )
        return {"state_dict": {k: v.cpu() for k, v in model.state_dict().items()}, "history": history}

    stored = cached(prep.cache_dir, "base_model", model_inputs, train, code=code_fingerprint(*BASE_CODE))
    model = BaseModel(copy.deepcopy(prep.backbone.tail), prep.backbone.feature_channels, prep.num_classes)
    model.load_state_dict(stored["state_dict"])
    model.to(runtime.device).eval()

    splits = ("train", "val", "test") if prep.val_feats is not None else ("train", "test")

    def cams() -> dict[str, torch.Tensor]:
        return {
            split: gradcam_maps(
                model, *prep.split(split), base_cfg.cam_target, progress=progress, runtime=runtime
            )
            for split in splits
        }

    maps = cached(prep.cache_dir, "gradcam", cam_inputs, cams, code=code_fingerprint(*GRADCAM_CODE))
    return BaseArtefacts(
        model, stored["history"], maps["train"], maps["test"], cam_inputs, maps.get("val")
    )


ExplainFn = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def evaluate(
    explain: ExplainFn,
    prep: Prepared,
    base: BaseArtefacts,
    batch_size: int = 50,
    split: str = "test",
) -> dict[str, Any]:
    """Accuracy and IoU coverage of an explainer on the (unflipped) images of ``split``.

    Args:
        explain: (trunk [B, Ct, h, w], index [B], split) -> (logits [B, C], word maps [B, m, h, w]);
            ``index`` indexes the images of ``split``.
        split: ``test`` (reported numbers) or ``val`` (every choice of defaults).
    Returns:
        accuracy, iou (at eval.quantile), iou_q<q> for each swept quantile,
        iou_reference (the reference code's low-region variant at eval.quantile),
        iou_reference_q<q> (that variant at each swept quantile),
        and per-image IoU at eval.quantile.
    """
    feats_all, labels = prep.split(split)
    device = prep.runtime.device
    n = feats_all.shape[0]
    batches = (
        (feats_all[index, 0].float().to(device), index)
        for index in (torch.arange(s, min(s + batch_size, n)) for s in range(0, n, batch_size))
    )
    return evaluate_batches(explain, batches, base.cams(split), labels, prep.exp.run.eval, device, split)


def evaluate_batches(
    explain: ExplainFn,
    batches: Any,
    test_cams: torch.Tensor,
    test_labels: torch.Tensor,
    ev: Any,
    device: torch.device,
    split: str = "test",
) -> dict[str, Any]:
    """The loop of :func:`evaluate` over any batches (cached features or streamed images).

    Args:
        batches: iterable of (trunk [B, Ct, h, w] on ``device``, index [B]) of
            the unflipped images of ``split``, in order, covering all of them.
        test_cams: [N, 2, hc, wc] base-model Grad-CAM of those images; test_labels: [N].
        ev: the :class:`lvwlib.core.config.EvalConfig`.
        split: passed to ``explain`` when it is not ``test`` (the base row looks up its maps).
    """
    quantiles = sorted({*ev.quantiles, ev.quantile})
    logits_all, ious = [], {q: [] for q in quantiles}
    # the reference code's low-region variant at every q (second row of Figure 3(b-f))
    ref_ious: dict[float, list[torch.Tensor]] = {q: [] for q in quantiles}
    for x, index in batches:
        logits, maps = explain(x, index) if split == "test" else explain(x, index, split)
        cams = test_cams[index, 0].to(device)
        logits_all.append(logits.detach().float().cpu())
        sweep = iou_sweep(cams, maps.detach().float(), quantiles, ev.eval_size)
        for q in quantiles:
            ious[q].append(sweep[("paper", q)].cpu())
            ref_ious[q].append(sweep[("reference", q)].cpu())
    logits = torch.cat(logits_all)
    result: dict[str, Any] = {
        "accuracy": accuracy(logits, test_labels),
        "iou": torch.cat(ious[ev.quantile]).mean().item(),
        "iou_reference": torch.cat(ref_ious[ev.quantile]).mean().item(),
        "per_image_iou": torch.cat(ious[ev.quantile]).tolist(),
    }
    for q in quantiles:
        result[f"iou_q{int(q)}"] = torch.cat(ious[q]).mean().item()
        result[f"iou_reference_q{int(q)}"] = torch.cat(ref_ious[q]).mean().item()
    return result


def method_inputs(prep: Prepared, base: BaseArtefacts, method: str, seed: int) -> dict[str, Any]:
    """Cache inputs of a trained method: features, the explained base model, its own config."""
    exp = prep.exp
    own: dict[str, Any] = {"lvw": to_dict(lvw_config(exp, method, seed))} if method in (
        "lvw", "lvw_noalign", "protopnet", "protopshare") else {}
    if method == "protopshare":
        own["protopshare"] = to_dict(exp.protopshare)
    if method == "prototree":
        own = {"prototree": to_dict(dataclasses.replace(exp.prototree, seed=seed)), "tail_init": exp.run.lvw.tail_init}
    if method == "srae":
        own = {"srae": to_dict(dataclasses.replace(exp.srae, seed=seed))}
    code = code_fingerprint(*METHOD_CODE[method]) if METHOD_CODE[method] else None
    return {**base.inputs, "method": method, "seed": seed, **own, "method_code": code}


def lvw_config(exp: Experiment, method: str, seed: int):
    """The LVWConfig of an LVW-family method (lvw, lvw_noalign, protopnet, protopshare)."""
    cfg = dataclasses.replace(exp.run.lvw, seed=seed)
    if method == "lvw_noalign":
        cfg = dataclasses.replace(cfg, beta_align=0.0)
    if method in ("protopnet", "protopshare"):
        cfg = dataclasses.replace(cfg, **{**PROTOPNET_DEFAULTS, **exp.protopnet, "class_specific": True})
    return cfg


def initial_tail(prep: Prepared, base: BaseArtefacts, tail_init: str) -> torch.nn.Module:
    """A copy of the tail every trained method starts from: ImageNet or the fine-tuned base."""
    if tail_init not in ("imagenet", "base"):
        raise ValueError(f"tail_init must be 'imagenet' or 'base', got {tail_init!r}")
    return copy.deepcopy(base.model.tail if tail_init == "base" else prep.backbone.tail)


def build_prototype_net(prep: Prepared, base: BaseArtefacts, cfg) -> PrototypeNet:
    """A fresh network; its tail starts from ImageNet weights or the fine-tuned base model."""
    return PrototypeNet(
        initial_tail(prep, base, cfg.tail_init), prep.backbone.feature_channels, prep.num_classes,
        cfg.words_per_class, cfg.feature_dim, seed=cfg.seed,
    )


def trained_prototype_net(
    prep: Prepared, base: BaseArtefacts, method: str, seed: int, progress: bool = True
) -> tuple[PrototypeNet, Any]:
    """Train (or resume / load from its checkpoint) LVW, LVW w/o alignment or ProtoPNet."""
    cfg = lvw_config(prep.exp, "protopnet" if method == "protopshare" else method, seed)
    inputs = method_inputs(prep, base, "protopnet" if method == "protopshare" else method, seed)
    ckpt = prep.cache_dir / "models" / f"{cache_key(inputs)}.pt"
    seed_everything(seed)
    model = build_prototype_net(prep, base, cfg)
    state = train_prototype_net(
        model, prep.train_feats, prep.train_labels, base.train_cams if cfg.beta_align > 0 else None,
        cfg, checkpoint=ckpt, progress=progress, runtime=prep.runtime,
    )
    return model, state


def run_method(prep: Prepared, base: BaseArtefacts, method: str, seed: int, progress: bool = True) -> dict[str, Any]:
    """Train (or load) ``method`` for ``seed`` and evaluate it; the result dict is cached."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    inputs = method_inputs(prep, base, method, seed)
    result = cached(
        prep.cache_dir, "results", {**inputs, "metrics": METRICS_VERSION},
        lambda: _run(prep, base, method, seed, progress), code=code_fingerprint(*RESULT_CODE),
    )
    if not artefacts.has_model(prep.cache_dir, inputs):
        # results cached before models were stored: fit again (LVW-family checkpoints load) to store it
        seed_everything(seed)
        _, extra = FITTERS[method](prep, base, seed, progress)
        artefacts.store_model(prep, base, method, seed, extra["_model"], extra.get("_push"))
    return result


Fitted = tuple[ExplainFn, dict[str, Any]]


def _fit_base(prep: Prepared, base: BaseArtefacts, seed: int, progress: bool) -> Fitted:
    # The base model explained by its own Grad-CAM: IoU 1 by construction, computed anyway.
    def explain(x: torch.Tensor, index: torch.Tensor, split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
        return base.model(x), base.cams(split)[index, 0][:, None].to(x.device)

    return explain, {"_model": base.model}


def _words_explainer(prep: Prepared, model: PrototypeNet) -> ExplainFn:
    m = prep.exp.run.eval.top_m
    return lambda x, index, split="test": model.explain(x, m)


def _fit_prototype_net(method: str) -> Callable[..., Fitted]:
    def fit(prep: Prepared, base: BaseArtefacts, seed: int, progress: bool) -> Fitted:
        model, state = trained_prototype_net(prep, base, method, seed, progress)
        extra = {
            "history": state.history,
            "push": state.pushes[-1] if state.pushes else [],
            "num_words": model.num_words,
            "_model": model,
            "_push": state.pushes[-1] if state.pushes else None,
        }
        return _words_explainer(prep, model), extra

    return fit


def _fit_protopshare(prep: Prepared, base: BaseArtefacts, seed: int, progress: bool) -> Fitted:
    pnet, _ = trained_prototype_net(prep, base, "protopnet", seed, progress)
    shared = protopshare(
        pnet, prep.train_feats, prep.train_labels,
        dataclasses.replace(prep.exp.protopshare, seed=seed),
        lvw_config(prep.exp, "protopshare", seed), progress=progress, runtime=prep.runtime,
    )
    model = shared["model"]
    extra = {"summary": {k: v for k, v in shared.items() if k != "model"}, "num_words": model.num_words,
             "_model": model, "_push": shared["push"]}
    return _words_explainer(prep, model), extra


def _fit_prototree(prep: Prepared, base: BaseArtefacts, seed: int, progress: bool) -> Fitted:
    # the same starting tail as the LVW-family rows, so rows differ only in the method
    tree = train_prototree(
        initial_tail(prep, base, prep.exp.run.lvw.tail_init), prep.train_feats, prep.train_labels,
        prep.num_classes, dataclasses.replace(prep.exp.prototree, seed=seed), progress=progress,
        device=prep.runtime.device,
    )
    m = prep.exp.run.eval.top_m
    return (lambda x, index, split="test": tree.explain(x, m)), {"summary": tree.summary, "_model": tree}


def _fit_srae(prep: Prepared, base: BaseArtefacts, seed: int, progress: bool) -> Fitted:
    cfg = dataclasses.replace(prep.exp.srae, seed=seed)
    srae = train_srae(base.model, prep.train_feats, prep.train_labels, cfg, progress=progress,
                      device=prep.runtime.device)
    extra = {
        "faithfulness": faithfulness_metrics(srae, base.model, prep.test_feats),
        "orthogonality": orthogonality_metrics(srae, base.model, prep.test_feats, prep.test_labels),
        "_model": srae,
    }
    return (lambda x, index, split="test": srae.explain(x)), extra


FITTERS: dict[str, Callable[..., Fitted]] = {
    "base": _fit_base,
    "protopnet": _fit_prototype_net("protopnet"),
    "prototree": _fit_prototree,
    "protopshare": _fit_protopshare,
    "lvw_noalign": _fit_prototype_net("lvw_noalign"),
    "lvw": _fit_prototype_net("lvw"),
    "srae": _fit_srae,
}


def _run(prep: Prepared, base: BaseArtefacts, method: str, seed: int, progress: bool) -> dict[str, Any]:
    seed_everything(seed)
    explain, extra = FITTERS[method](prep, base, seed, progress)
    # the trained model becomes a weights-only artefact (lvwlib.experiment.artefacts), not part of the result dict
    artefacts.store_model(prep, base, method, seed, extra.pop("_model"), extra.pop("_push", None))
    result = evaluate(explain, prep, base)
    if prep.val_feats is not None:
        # Validation numbers, for every choice of defaults; test stays for reporting.
        val = evaluate(explain, prep, base, split="val")
        result["val"] = {k: v for k, v in val.items() if k != "per_image_iou"}
    result.update(method=method, seed=seed, **extra)
    return result


def run_all(exp: Experiment, progress: bool = True) -> list[dict[str, Any]]:
    """Every method of ``exp.methods`` for every seed on one dataset; rows for Table 1."""
    prep = prepare(exp, progress)
    rows = []
    for seed in tqdm(exp.seeds, desc=f"seeds ({exp.run.data.name})", disable=not progress):
        base = base_for_seed(prep, seed, progress)
        for method in exp.methods:
            rows.append(run_method(prep, base, method, seed, progress))
    return rows


def load_experiment(params_file: str | Path, dataset: str | None = None) -> Experiment:
    """Read, check and build the :class:`Experiment` of a params yaml (relative to the project).

    Every ValueError names the file (the schema's ConfigError does already).
    """
    path = resolve(params_file)
    try:
        return experiment_from_params(load_params(path), dataset, source=params_file)
    except ConfigError:
        raise
    except ValueError as err:
        raise ValueError(f"{params_file}: {err}") from err
