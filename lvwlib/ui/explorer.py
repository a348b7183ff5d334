"""The explorer's computations, without widgets: what each view shows, as arrays and text.

:mod:`lvwlib.ui.widgets` draws what :func:`image_view` and :func:`word_view`
return; tests call these (and the widget callbacks) directly. The data, base model
and trained models come from a :class:`lvwlib.ui.session.Session`;
:class:`ExplorerCache` adds what the explorer computes once per method on top of it.

Every IoU shown is :func:`lvwlib.core.metrics.coverage` at the evaluation size
(``eval.eval_size``), the one Table 1 uses, whatever the image size.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from lvwlib.core.gradcam import gradcam_maps
from lvwlib.core.maps import normalise_maps, patch_box, upsample_map
from lvwlib.core.metrics import coverage, iou_coverage
from lvwlib.data.images import pil_to_tensor01
from lvwlib.experiment.config import experiment_from_params
from lvwlib.experiment.evaluate import EVAL_BATCH
from lvwlib.experiment.keys import feature_inputs
from lvwlib.experiment.models import (
    ModelNotCachedError,
    TrainedModel,
    available_models,
    model_exists,
)
from lvwlib.methods import label, names
from lvwlib.paper.analyses import eval_batch
from lvwlib.store.paths import resolve
from lvwlib.ui.session import Session

QUICK_HINT = "make quick"  # the command that trains every method on params/quick.yaml


def empty_state_text(params_file: str, cache_dir: Path, method: str | None = None) -> str:
    """What to run when the cache holds no trained model (of ``method``, or at all)."""
    what = f"no trained {label(method)} model" if method else "no trained model"
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
    found: dict[str, set[int]] = {}
    for row in available_models(resolve(exp0.run.cache_dir)):
        found.setdefault(row["dataset"], set()).add(int(row["seed"]))
    choices: dict[str, list[int]] = {}
    for dataset in sorted(found):
        if datasets is not None and dataset not in datasets:
            continue
        try:
            exp = experiment_from_params(params, dataset)
            feats = feature_inputs(exp)
        except (FileNotFoundError, ValueError, RuntimeError):
            continue  # the data is gone or the params do not fit it: nothing to explore
        seeds = [s for s in sorted(found[dataset]) if any(model_exists(exp, m, s, feats) for m in names())]
        if seeds:
            choices[dataset] = seeds
    return choices


@dataclass
class Summary:
    """Per-method pass over the whole test set (for ordering and filtering images)."""

    pred: torch.Tensor  # [Nt] predicted class
    iou: torch.Tensor  # [Nt] IoU at the evaluation's q, m and size (Table 1's per-image IoU)


@dataclass
class Explanation:
    """What a model says about one image: logits [C], maps [m', h, w], the word of each map [m'] (or None)."""

    logits: torch.Tensor
    maps: torch.Tensor
    words: list[int] | None


def explain_image(model: TrainedModel, x: torch.Tensor, m: int) -> Explanation:
    """The explanation of one image's trunk features x [Ct, h, w] (an upload: no batch to share)."""
    logits, maps, ids = model.explain(x[None].float(), m)
    return Explanation(logits[0].detach(), maps[0].detach().float(), None if ids is None else ids[0].tolist())


@dataclass
class ExplorerCache:
    """What the explorer computes once on top of a session: test-set explanations, summaries, word sources.

    A test image is explained inside the batch the Table 1 evaluation explains it in
    (:data:`EVAL_BATCH` images, in order): a model's output can differ in the last bits
    with the batch's size, and a last bit can move a pixel across the q-th percentile.
    So the IoU shown for a test image is Table 1's per-image IoU, to the bit.
    """

    session: Session
    batches: dict[tuple[str, int, int], list[Explanation]] = field(default_factory=dict)
    summaries: dict[str, Summary] = field(default_factory=dict)
    sources: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)

    @property
    def image_size(self) -> int:
        """Side of the images (what is drawn)."""
        return self.session.exp.run.data.image_size

    @property
    def eval_size(self) -> int:
        """Side at which maps are compared (what IoU is measured on)."""
        return self.session.exp.run.eval.eval_size

    def model(self, method: str) -> TrainedModel | None:
        """The trained model of ``method`` or None when it is not in the cache (never trains)."""
        try:
            return self.session.model(method, train=False)
        except ModelNotCachedError:
            return None

    def _model(self, method: str) -> TrainedModel:
        model = self.model(method)
        if model is None:
            raise ModelNotCachedError(f"no trained {method}")
        return model

    def explanation(self, method: str, index: int, m: int) -> Explanation:
        """``method``'s explanation of test image ``index`` with m maps, computed in its evaluation batch."""
        start, offset = eval_batch(index)
        key = (method, m, start)
        if key not in self.batches:
            x = self.session.prep.test_feats[start : start + EVAL_BATCH, 0].float()
            logits, maps, ids = self._model(method).explain(x, m)
            self.batches[key] = [
                Explanation(logits[j].detach(), maps[j].detach().float(), None if ids is None else ids[j].tolist())
                for j in range(x.shape[0])
            ]
        return self.batches[key][offset]

    def summary(self, method: str) -> Summary:
        """Predictions and per-image IoU of ``method`` on every test image at the evaluation's q and m
        (computed once): Table 1's ``per_image_iou``."""
        if method not in self.summaries:
            sess = self.session
            ev = sess.exp.run.eval
            n = sess.prep.test_feats.shape[0]
            explained = [self.explanation(method, i, ev.top_m) for i in range(n)]
            preds, ious = [], []
            for start in range(0, n, EVAL_BATCH):
                part = explained[start : start + EVAL_BATCH]
                cams = sess.base.test_cams[start : start + EVAL_BATCH, 0]
                preds.append(torch.stack([e.logits for e in part]).argmax(1))
                ious.append(iou_coverage(cams, torch.stack([e.maps for e in part]), ev.quantile, ev.eval_size))
            self.summaries[method] = Summary(torch.cat(preds), torch.cat(ious))
        return self.summaries[method]

    def word_source(self, method: str, word: int) -> dict[str, Any]:
        """Word ``word``'s training patch: image [3, S, S], its class, the word's map there [S, S], the box."""
        key = (method, word)
        if key not in self.sources:
            model = self._model(method)
            if model.words is None:
                raise ValueError(f"{method} has no words with training patches")
            prep = self.session.prep
            src = model.words.push[word]
            image = prep.bundle.train[src.image][0]
            act = model.word_maps(prep.train_feats[src.image : src.image + 1, 0].float())[0, word]  # [h, w]
            self.sources[key] = {
                "image": image, "act": upsample_map(act, self.image_size), "box": patch_box(act, self.image_size),
                "label": int(prep.train_labels[src.image]), "index": src.image, "row": src.row, "col": src.col,
            }
        return self.sources[key]


def image_view(explained: Explanation, cam: torch.Tensor, eval_size: int, q: float) -> dict[str, Any]:
    """Everything the explorer shows for one image and one method.

    Args:
        explained: the method's explanation of the image; cam: the base model's Grad-CAM [hc, wc].
        eval_size: side at which the maps are compared (``eval.eval_size``).
    Returns:
        ``cam`` and ``a_k`` ([E, E] in [0, 1], E = eval_size), ``mask_cam`` / ``mask_a_k``
        ([E, E] bool, the paper's high regions at q), ``iou``, ``pred``, ``logits`` [C],
        ``words`` (word ids of the maps, root/top first, or None) and ``maps`` [m', h, w].
    """
    cov = coverage(cam[None].float(), explained.maps[None], [q], eval_size)
    mask_cam, mask_a_k = cov.masks(q)
    return {
        "cam": cov.cam[0], "a_k": cov.words[0], "mask_cam": mask_cam[0], "mask_a_k": mask_a_k[0],
        "iou": float(cov.iou(q)[0]), "pred": int(explained.logits.argmax()), "logits": explained.logits,
        "words": explained.words, "maps": explained.maps,
    }


def word_view(model: TrainedModel, x: torch.Tensor, word: int, pred: int, size: int) -> dict[str, Any]:
    """One word on one image: its map [S, S] (min-max scaled), its score, its weight to ``pred``."""
    wmap = model.word_maps(x[None].float())[0, word]  # [h, w]
    up = normalise_maps(upsample_map(wmap, size, mode="bilinear")[None], "minmax")[0]
    weight = None
    if model.words is not None and model.words.class_weights is not None:
        weight = float(model.words.class_weights[pred, word])
    return {"map": up, "score": float(wmap.max()), "weight": weight}


def image_from_bytes(data: bytes, size: int) -> torch.Tensor:
    """An uploaded image file -> [3, S, S] float in [0, 1] (resized as the datasets are)."""
    return pil_to_tensor01(Image.open(io.BytesIO(data)), size)


def gradcam_of(model: torch.nn.Module, trunk: torch.Tensor) -> torch.Tensor:
    """The base model's Grad-CAM [h, w] (predicted class) of one image's trunk features [Ct, h, w]."""
    return gradcam_maps(model, trunk[None, None].expand(1, 2, -1, -1, -1).float(), progress=False)[0, 0]
