"""The explorer's computations, without widgets: what each view shows, as arrays and text.

:mod:`lvwlib.ui.widgets` draws what :func:`image_view` and :func:`word_view`
return; tests call these (and the widget callbacks) directly.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from lvwlib.core.maps import combined_word_map, patch_box, upsample_cam, upsample_map
from lvwlib.core.metrics import mask_iou, quantile_mask
from lvwlib.data.images import pil_to_tensor01
from lvwlib.experiment.artefacts import (
    ARTEFACT_KIND,
    ModelNotCachedError,
    TrainedModel,
    artefact_path,
    load_model,
    model_inputs,
)
from lvwlib.experiment.pipeline import (
    METHOD_LABELS,
    METHODS,
    BaseArtefacts,
    Experiment,
    Prepared,
    base_for_seed,
    experiment_from_params,
    feature_inputs,
    prepare,
    resolve,
)

QUICK_HINT = "make quick"  # the command that trains every method on params/quick.yaml


def empty_state_text(params_file: str, cache_dir: Path, method: str | None = None) -> str:
    """What to run when the cache holds no trained model (of ``method``, or at all)."""
    what = f"no trained {METHOD_LABELS.get(method, method)} model" if method else "no trained model"
    return (
        f"There is {what} for {params_file} in {cache_dir}. "
        f"Run `{QUICK_HINT}` (every method on a small imagenette subset, a few minutes) "
        f"or `make reproduce` (the full setting, hours), then run this cell again."
    )


def cached_choices(params: dict[str, Any], datasets: list[str] | None = None) -> dict[str, list[int]]:
    """Datasets and seeds with at least one trained model of this config in the cache.

    Candidates come from the cache's json sidecars; each is confirmed by
    recomputing its key from ``params`` (a model of another config is not offered).
    """
    exp0 = experiment_from_params(params)
    folder = resolve(exp0.run.cache_dir) / ARTEFACT_KIND
    found: dict[str, set[int]] = {}
    for meta in sorted(folder.glob("*.json")):
        inputs = json.loads(meta.read_text())
        found.setdefault(inputs["data"]["name"], set()).add(int(inputs["seed"]))
    choices: dict[str, list[int]] = {}
    for dataset in sorted(found):
        if datasets is not None and dataset not in datasets:
            continue
        try:
            exp = experiment_from_params(params, dataset)
            feats = feature_inputs(exp)
        except (FileNotFoundError, ValueError, RuntimeError):
            continue  # the data is gone or the params do not fit it: nothing to explore
        cache_dir = resolve(exp.run.cache_dir)
        seeds = [s for s in sorted(found[dataset])
                 if any(artefact_path(cache_dir, model_inputs(exp, feats, m, s)).exists() for m in METHODS)]
        if seeds:
            choices[dataset] = seeds
    return choices


@dataclass
class Summary:
    """Per-method pass over the whole test set (for ordering and filtering images)."""

    pred: torch.Tensor  # [Nt] predicted class
    iou: torch.Tensor  # [Nt] IoU at the evaluation's q and m


@dataclass
class Session:
    """One dataset and seed: its data, base model and (lazily) each method's model."""

    exp: Experiment
    prep: Prepared
    base: BaseArtefacts
    seed: int
    models: dict[str, TrainedModel | None] = field(default_factory=dict)
    summaries: dict[str, Summary] = field(default_factory=dict)
    sources: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def open(cls, params: dict[str, Any], dataset: str, seed: int) -> Session:
        """Load the cached features and base model (never trains: call only for cached choices)."""
        exp = experiment_from_params(params, dataset)
        prep = prepare(exp, progress=False)
        base = base_for_seed(prep, seed, progress=False)
        return cls(exp, prep, base, seed)

    @property
    def size(self) -> int:
        return self.exp.run.data.image_size

    @property
    def class_names(self) -> list[str]:
        return [self.prep.bundle.human_names.get(c, c) for c in self.prep.bundle.classes]

    def model(self, method: str) -> TrainedModel | None:
        """The trained model of ``method`` or None when it is not in the cache."""
        if method not in self.models:
            try:
                self.models[method] = load_model(self.exp, self.exp.run.data.name, method, self.seed, prep=self.prep)
            except ModelNotCachedError:
                self.models[method] = None
        return self.models[method]

    def summary(self, method: str) -> Summary:
        """Predictions and per-image IoU of ``method`` on every test image (computed once)."""
        if method not in self.summaries:
            model = self.model(method)
            if model is None:
                raise ModelNotCachedError(f"no trained {method}")
            ev = self.exp.run.eval
            preds, ious = [], []
            for start in range(0, self.prep.test_feats.shape[0], 64):
                x = self.prep.test_feats[start : start + 64, 0].float()
                logits, maps = model.explain(x, ev.top_m)
                cams = self.base.test_cams[start : start + 64, 0]
                preds.append(logits.argmax(1))
                ious.append(iou_of(cams, maps.detach(), ev.quantile, ev.eval_size))
            self.summaries[method] = Summary(torch.cat(preds), torch.cat(ious))
        return self.summaries[method]

    def test_image(self, index: int) -> torch.Tensor:
        """Test image [3, S, S] in [0, 1]."""
        return self.prep.bundle.test[index][0]

    def word_source(self, method: str, word: int) -> dict[str, Any]:
        """Word ``word``'s training patch: image [3, S, S], its class, the word's map there, the box."""
        key = (method, word)
        if key not in self.sources:
            model = self.model(method)
            assert model is not None and model.words is not None
            src = model.words.push[word]
            image = self.prep.bundle.train[src.image][0]
            if src.flip:
                image = torch.flip(image, dims=[2])
            feats = self.prep.train_feats[src.image : src.image + 1, src.flip].float()
            act = model.word_maps(feats)[0, word]  # [h, w]
            self.sources[key] = {
                "image": image, "act": upsample_map(act, self.size), "box": patch_box(act, self.size),
                "label": int(self.prep.train_labels[src.image]), "index": src.image, "row": src.row, "col": src.col,
            }
        return self.sources[key]


def iou_of(cams: torch.Tensor, maps: torch.Tensor, q: float, size: int) -> torch.Tensor:
    """Per-image IoU [B] of the Grad-CAM [B, hc, wc] and word maps [B, m, h, w] high regions at q."""
    a_bar = upsample_cam(cams, size)
    a_k = combined_word_map(maps, size, "minmax")
    return mask_iou(quantile_mask(a_bar, q), quantile_mask(a_k, q))


def image_view(
    model: TrainedModel, x: torch.Tensor, cam: torch.Tensor, size: int, m: int, q: float
) -> dict[str, Any]:
    """Everything the explorer shows for one image and one method.

    Args:
        x: trunk features [Ct, h, w]; cam: the base model's Grad-CAM [hc, wc].
    Returns:
        ``cam`` and ``a_k`` ([S, S] in [0, 1]), ``mask_cam`` / ``mask_a_k`` ([S, S] bool),
        ``iou``, ``pred``, ``logits`` [C], ``words`` (word ids of the maps, root/top first,
        or None) and ``maps`` [m', h, w].
    """
    logits, maps, ids = model.explain_words(x[None].float(), m)
    maps = maps.detach()
    a_bar = upsample_cam(cam[None].float(), size)
    a_k = combined_word_map(maps, size, "minmax")
    m_bar, m_k = quantile_mask(a_bar, q), quantile_mask(a_k, q)
    return {
        "cam": a_bar[0], "a_k": a_k[0], "mask_cam": m_bar[0], "mask_a_k": m_k[0],
        "iou": float(mask_iou(m_bar, m_k)[0]), "pred": int(logits[0].argmax()), "logits": logits[0].detach(),
        "words": None if ids is None else [int(j) for j in ids[0]], "maps": maps[0],
    }


def word_view(model: TrainedModel, x: torch.Tensor, word: int, pred: int, size: int) -> dict[str, Any]:
    """One word on one image: its map [S, S] (min-max scaled), its score, its weight to ``pred``."""
    wmap = model.word_maps(x[None].float())[0, word]  # [h, w]
    up = upsample_map(wmap, size, mode="bilinear")
    up = (up - up.min()) / (up.max() - up.min() + 1e-8)
    weight = None
    if model.words is not None and model.words.class_weights is not None:
        weight = float(model.words.class_weights[pred, word])
    return {"map": up, "score": float(wmap.max()), "weight": weight}


def image_from_bytes(data: bytes, size: int) -> torch.Tensor:
    """An uploaded image file -> [3, S, S] float in [0, 1] (resized as the datasets are)."""
    return pil_to_tensor01(Image.open(io.BytesIO(data)), size)


def load_params_file(params_file: str | Path) -> dict[str, Any]:
    from lvwlib.core.config import load_params

    return load_params(resolve(params_file))


__all__ = [
    "QUICK_HINT", "Session", "Summary", "cached_choices", "empty_state_text", "image_from_bytes",
    "image_view", "iou_of", "load_params_file", "word_view", "ModelNotCachedError",
]


def gradcam_of(model: torch.nn.Module, trunk: torch.Tensor) -> torch.Tensor:
    """The base model's Grad-CAM [h, w] (predicted class) of one image's trunk features [Ct, h, w]."""
    from lvwlib.core.gradcam import gradcam_maps

    return gradcam_maps(model, trunk[None, None].expand(1, 2, -1, -1, -1).float(), progress=False)[0, 0]
