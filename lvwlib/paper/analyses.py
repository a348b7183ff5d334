"""Computations behind the paper's analyses (Figures 2-5, the word gallery).

Nothing here plots; each function takes tensors or trained artefacts and
returns tensors or tables that the notebooks draw and save as CSV.

- :func:`random_halves`, :func:`half_metrics`: Figure 3(a)'s "3 random halves
  of the test set" protocol.
- :func:`random_map_iou`: the chance level of IoU coverage (uniform noise maps).
- :func:`class_word_vectors`, :func:`class_correlation`, :func:`extreme_pairs`:
  Figure 4's class similarity through mean word-score vectors.
- :func:`word_matches`: words on a query image beside the training patches they were pushed onto.
- :func:`per_image_eval`: per-image correctness and IoU of a trained model on
  any feature set (seen or held-out test images, Figures 3(a) and 5).

Every IoU here is :func:`lvwlib.core.metrics.iou_coverage` at the evaluation size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from lvwlib.backbones.trunk_features import compute_trunk_features
from lvwlib.core.gradcam import gradcam_maps
from lvwlib.core.maps import upsample_map
from lvwlib.core.metrics import iou_coverage, iou_sweep
from lvwlib.core.push import WordSource
from lvwlib.experiment.evaluate import EVAL_BATCH
from lvwlib.experiment.keys import split_inputs
from lvwlib.experiment.models import TrainedModel
from lvwlib.paper.figures import WordMatch
from lvwlib.store.cache import cached


def eval_batch(index: int) -> tuple[int, int]:
    """(first test position of the evaluation batch holding test image ``index``, its offset in it)."""
    return index - index % EVAL_BATCH, index % EVAL_BATCH


# ---------------------------------------------------------------- Figure 3(a)

def random_halves(n: int, n_splits: int = 3, seed: int = 0) -> list[torch.Tensor]:
    """``n_splits`` seeded random subsets, each of floor(n / 2) distinct test positions (sorted)."""
    if n < 2:
        raise ValueError(f"need at least 2 test images to halve, got {n}")
    gen = torch.Generator().manual_seed(seed)
    return [torch.randperm(n, generator=gen)[: n // 2].sort().values for _ in range(n_splits)]


def half_metrics(correct: torch.Tensor, iou: torch.Tensor, halves: list[torch.Tensor]) -> pd.DataFrame:
    """Accuracy and mean IoU on each half.

    Args:
        correct: [N] bool, whether each test image is classified correctly.
        iou: [N] per-image IoU coverage.
        halves: index tensors from :func:`random_halves`.
    Returns:
        one row per half: split, accuracy, iou.
    """
    return pd.DataFrame([
        {"split": s, "accuracy": correct[h].float().mean().item(), "iou": iou[h].float().mean().item()}
        for s, h in enumerate(halves)
    ])


def k_sweep_rows(
    models: dict[int, TrainedModel], prep: Any, base: Any, halves: list[torch.Tensor], dataset: str, seed: int
) -> pd.DataFrame:
    """Figure 3(a)'s table: accuracy and IoU of each k's LVW model on each test half.

    Args:
        models: k -> LVW trained with ``lvw.topk_align = k``; prep, base: their data and base model.
        halves: from :func:`random_halves`.
    Returns:
        columns dataset, k, seed, split, accuracy, iou (one row per k and half).
    """
    ev = prep.exp.run.eval
    rows = []
    for k, model in models.items():
        out = per_image_eval(model, prep.test_feats, base.test_cams, ev.quantile, ev.top_m, ev.eval_size)
        per_half = half_metrics(out["pred"] == prep.test_labels, out["iou"], halves)
        rows.append(per_half.assign(k=k, seed=seed, dataset=dataset))
    return pd.concat(rows, ignore_index=True)[["dataset", "k", "seed", "split", "accuracy", "iou"]]


# ---------------------------------------------------------------- chance level

def uniform_noise_maps(n: int, size: int, seed: int) -> torch.Tensor:
    """[n, 1, size, size] i.i.d. U(0, 1) maps from their own generator seeded ``seed``."""
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(seed))


def random_map_iou(
    cams: torch.Tensor, q: float, size: int, variant: str = "paper", seed: int = 0
) -> torch.Tensor:
    """Per-image IoU coverage [B] of uniform-noise maps (one per image, [size, size]
    i.i.d. U(0, 1) pixels) against the Grad-CAM maps ``cams`` [B, hc, wc].

    The chance level of the metric: with p = 1 - q/100 of each map selected
    independently, E[IoU] ~ p / (2 - p) (1/3 at q = 50, 0.053 at q = 90 for the
    paper's high regions; the reference variant selects the LOW region,
    p = q/100, so its chance level grows with q: 0.82 at q = 90).
    """
    return iou_coverage(cams, uniform_noise_maps(cams.shape[0], size, seed), q, size, variant)


RANDOM_MAP_CHUNK = 64  # images per piece of the sweep (~13 MB per [64, 224, 224] float map)


def random_map_sweep(
    cams: torch.Tensor, qs: list[float], size: int, seed: int = 0, chunk: int = RANDOM_MAP_CHUNK
) -> dict[tuple[str, float], torch.Tensor]:
    """:func:`random_map_iou` for every q and both variants at once: {(variant, q): IoU [B]}.

    The same noise as ``random_map_iou(cams, q, size, variant, seed)``
    (:func:`uniform_noise_maps`, drawn whole), upsampled and sorted once instead of per
    (q, variant); equal bit for bit. Every step is per image (upsampling, min-max scaling,
    each map's own percentiles, its IoU), so the images go through in pieces of ``chunk``:
    the same numbers, with the working set of a piece in the CPU's caches instead of every
    image's [S, S] maps, sort buffers and masks at once (500 test images at 224 px: 2.5 s
    instead of 4.7-5.9 s on one thread here).
    """
    noise = uniform_noise_maps(cams.shape[0], size, seed)
    parts = [iou_sweep(cams[i : i + chunk], noise[i : i + chunk], qs, size) for i in range(0, cams.shape[0], chunk)]
    return {key: torch.cat([part[key] for part in parts]) for key in parts[0]}


def chance_iou(q: float, variant: str = "paper") -> float:
    """Expected IoU of two independent random masks each covering a fraction p of the pixels."""
    p = 1 - q / 100 if variant == "paper" else q / 100
    return p / (2 - p)


# ---------------------------------------------------------------- Figure 4

def class_word_vectors(scores: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Mean word-score vector of each class: scores [N, M], labels [N] -> [C, M]."""
    out = torch.zeros(num_classes, scores.shape[1])
    for c in range(num_classes):
        members = scores[labels == c]
        if len(members) == 0:
            raise ValueError(f"class {c} has no images to average")
        out[c] = members.float().mean(dim=0)
    return out


def class_correlation(vectors: torch.Tensor) -> np.ndarray:
    """Pearson correlation [C, C] between the classes' word vectors [C, M]."""
    return np.corrcoef(vectors.double().numpy())


def extreme_pairs(corr: np.ndarray) -> tuple[tuple[int, int], tuple[int, int]]:
    """The most and the least correlated pair of distinct classes (i < j) of ``corr`` [C, C]."""
    c = corr.shape[0]
    if c < 2:
        raise ValueError("need at least 2 classes for a pair")
    iu = np.triu_indices(c, k=1)
    values = corr[iu]
    hi, lo = int(np.argmax(values)), int(np.argmin(values))
    return (int(iu[0][hi]), int(iu[1][hi])), (int(iu[0][lo]), int(iu[1][lo]))


def pair_table(corr: np.ndarray, similarity: np.ndarray, names: list[str]) -> pd.DataFrame:
    """One row per class pair i < j: word-vector correlation and the base model's similarity."""
    c = corr.shape[0]
    return pd.DataFrame([
        {"class_a": names[i], "class_b": names[j], "word_correlation": float(corr[i, j]),
         "base_similarity": float(similarity[i, j])}
        for i in range(c) for j in range(i + 1, c)
    ])


def base_class_similarity(probs: torch.Tensor, labels: torch.Tensor, num_classes: int) -> np.ndarray:
    """Symmetrised mean softmax mass the base model gives class b on images of class a.

    probs [N, C], labels [N] -> [C, C]; S[a, b] = (P(b | a) + P(a | b)) / 2, an
    independent notion of "similar classes" to test Figure 4's claim against.
    """
    mean = class_word_vectors(probs, labels, num_classes).numpy()  # [C, C]: row a = mean probs on class a
    return (mean + mean.T) / 2


# ---------------------------------------------------------------- Figure 5

@torch.no_grad()
def per_image_eval(
    model: TrainedModel, feats: torch.Tensor, cams: torch.Tensor, q: float, top_m: int, size: int,
    batch_size: int = EVAL_BATCH,
) -> dict[str, torch.Tensor]:
    """Predictions, word scores and IoU coverage of each image, as the Table 1 evaluation measures them.

    Args:
        model: a trained model with words (:func:`lvwlib.experiment.models.load_model`).
        feats: [N, 2, Ct, h, w] trunk features (orientation 0 is used).
        cams: [N, 2, hc, wc] base-model Grad-CAM of the same images.
        size: the evaluation size (``eval.eval_size``).
    Returns:
        pred [N], scores [N, M], iou [N] (top_m words vs Grad-CAM at q).
    """
    preds, scores, ious = [], [], []
    for start in range(0, feats.shape[0], batch_size):
        x = feats[start : start + batch_size, 0].float()
        logits, maps, _ = model.explain(x, top_m)
        preds.append(logits.argmax(dim=1))
        scores.append(model.word_scores(x))
        ious.append(iou_coverage(cams[start : start + batch_size, 0], maps.detach().float(), q, size))
    return {"pred": torch.cat(preds), "scores": torch.cat(scores), "iou": torch.cat(ious)}


@torch.no_grad()
def all_word_scores(model: TrainedModel, feats: torch.Tensor, batch_size: int = 100) -> torch.Tensor:
    """Score of every word on every (unflipped) image: feats [N, 2, Ct, h, w] -> [N, M]."""
    return torch.cat([model.word_scores(feats[i : i + batch_size, 0].float())
                      for i in range(0, feats.shape[0], batch_size)])


def heldout_artefacts(prep: Any, base: Any, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Trunk features [Nh, 2, Ct, h, w] and base-model Grad-CAM [Nh, 2, hc, wc] of the
    held-out test images (``prep.bundle.heldout``), both cached.

    Grad-CAM targets the predicted class: the true class is unknown to the model.
    """
    if prep.bundle.heldout is None:
        raise ValueError("the dataset has no held-out classes: set data.holdout_classes")
    feats = cached(
        prep.cache_dir, "features", split_inputs(prep.feature_inputs, "heldout"),
        lambda: compute_trunk_features(prep.backbone.trunk, prep.bundle.heldout, num_workers=prep.exp.run.num_workers,
                                       desc="trunk features (held out)", progress=progress),
    )
    cams = cached(
        prep.cache_dir, "gradcam", split_inputs(base.inputs, "heldout"),
        lambda: gradcam_maps(base.model, feats, None, "predicted", progress=progress),
    )
    return feats, cams


def source_labels(sources: Sequence[WordSource], train_labels: torch.Tensor) -> torch.Tensor:
    """[M]: the class of the training image each word was pushed onto (``sources``: a model's
    ``words.push``, one per word)."""
    return torch.tensor([int(train_labels[src.image]) for src in sources], dtype=torch.long)


def source_class_counts(
    top_words: torch.Tensor, heldout_labels: torch.Tensor, word_labels: torch.Tensor,
    heldout_names: list[str], class_names: list[str],
) -> pd.DataFrame:
    """How often each training class is the source of a held-out image's top words.

    Args:
        top_words: [Nh, m] each held-out image's m top-scoring words.
        heldout_labels: [Nh], indexing ``heldout_names``.
        word_labels: [M] class of each word's source image (:func:`source_labels`).
    Returns:
        long table: heldout_class, source_class, count.
    """
    rows = []
    for h, held in enumerate(heldout_names):
        words = top_words[heldout_labels == h].flatten()
        counts = torch.bincount(word_labels[words], minlength=len(class_names))
        rows += [{"heldout_class": held, "source_class": class_names[c], "count": int(counts[c])}
                 for c in range(len(class_names))]
    return pd.DataFrame(rows)


@torch.no_grad()
def word_matches(
    model: TrainedModel, query_trunk: torch.Tensor, words: list[int], train_images: Any,
    train_feats: torch.Tensor, train_labels: torch.Tensor, source_name: Any,
) -> list[WordMatch]:
    """Figure 2 / Figure 5 rows: each word on the query image beside its source training patch.

    Args:
        model: a trained model with words and push sources.
        query_trunk: [Ct, h, w] trunk features of the query (test or held-out) image.
        words: word indices to show.
        train_images: the training dataset (``prep.bundle.train``), yields (image [3, S, S], label).
        train_feats: [N, 2, Ct, h, w] training trunk features; train_labels: [N].
        source_name: class index -> readable name, used in each title.
    Returns:
        :class:`lvwlib.paper.figures.WordMatch` per word (query and source activations upsampled
        bicubically to S, as ProtoPNet); the title names the source image's class.
    """
    if model.words is None:
        raise ValueError(f"{model.method} has no words to show")
    query_maps = model.word_maps(query_trunk[None].float())[0]  # [M, h, w]
    out = []
    for w in words:
        src = model.words.push[w]
        image = train_images[src.image][0]
        size = image.shape[-1]
        smap = model.word_maps(train_feats[src.image, 0][None].float())[0, w]  # push scans unflipped images
        label = int(train_labels[src.image])
        out.append(WordMatch(upsample_map(query_maps[w], size), image, upsample_map(smap, size),
                             f"word {w} ({source_name(label)})"))
    return out


def figure2_image(correct: torch.Tensor) -> int:
    """The Figure 2 test image: the first one every method classifies correctly, else the first with
    the most methods correct. correct: [methods, N] bool."""
    votes = correct.sum(dim=0)
    return int(torch.nonzero(votes == votes.max()).flatten()[0])


def most_used_words(top_words: torch.Tensor, num_words: int, limit: int) -> list[int]:
    """The ``limit`` words that appear most often among the images' top words, most used first.

    A gallery of ProtoTree's 1,023 prototypes is a 28 MB image nobody reads; the words a
    model actually shows on the test set are the ones worth a look. Ties keep word order.

    Args:
        top_words: [N, m] word indices shown for each of N images (top m words; ProtoTree: its path).
        num_words: M, the model's number of words.
        limit: how many to keep (all when M <= limit).
    Returns:
        word indices, at most ``limit``.
    """
    if num_words <= limit:
        return list(range(num_words))
    shown = top_words.flatten().long()
    counts = torch.bincount(shown[shown >= 0], minlength=num_words)  # -1: no word (a path shorter than m)
    order = sorted(range(num_words), key=lambda j: (-int(counts[j]), j))
    return order[:limit]
