"""Deletion and insertion faithfulness of every Table 1 row with the whole model re-run (notebook 11).

IoU coverage asks whether a method's map agrees with the base model's Grad-CAM, which LVW is
trained to match. Deletion / insertion (Petsiuk et al., RISE 2018; :mod:`lvwlib.core.faithfulness`)
ask whether the map is faithful to the method's *own* decision: the pixels it ranks first are
removed from the image (set to 0) or inserted into its blurred copy, and the **whole** model,
frozen trunk included, is re-run on every perturbed image. The probability of the class the
model predicts on the intact image is followed; deletion AUC lower is better, insertion higher.

Rows (one trunk pass set each; the trunk is shared by every method, so each perturbed image
goes through it once and every row's head reads the same features):

- each method's own map on its own prediction: the max over its top-m maps (ProtoTree: its
  path; SRAE: its map), upsampled bilinearly to the image and min-max scaled, as IoU coverage
  combines them (:func:`lvwlib.core.maps.combined_word_map`);
- the base model's Grad-CAM (of its predicted class) on the base model;
- a random map: i.i.d. U(0, 1) on the trunk grid (as smooth as the methods' maps once
  upsampled, so it is not a salt-and-pepper deletion), seeded. Its perturbed images do not
  depend on the model, so its curves are computed once and read under **every** model's head:
  each method is compared with the random map on its own model (the claim), and the table's
  random row is the random map on the base model.

Subset: ``n`` test images chosen by :func:`subset_indices` (classes in turn, a seeded
permutation inside each class), ``steps`` equal steps; the images that every row shares
(intact, all deleted, blurred) go through the trunk once. Both are ``analyses:`` parameters
(:class:`lvwlib.core.config.AnalysesConfig`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from lvwlib.backbones.trunk_features import make_trunk_runner, trunk_onnx_inputs, trunk_onnx_path
from lvwlib.core.faithfulness import blurred, curve_auc, pixel_order
from lvwlib.core.maps import combined_word_map, upsample_cam
from lvwlib.experiment.models import TrainedModel
from lvwlib.methods import registry
from lvwlib.paper.tables import mean_sd_cells
from lvwlib.store.cache import cached
from lvwlib.store.fingerprint import code_fingerprint
from lvwlib.store.paths import resolve

KIND = "faithfulness"  # cache folder: one entry per (dataset, seed, row)
RANDOM_ROW = "Random map"
MODES = ("deletion", "insertion")
# The code a cached curve depends on (lvwlib.store.fingerprint follows the imports).
CODE = ("lvwlib.paper.faithfulness",)

# trunk features [N, Ct, h, w] -> logits [N, C]
Head = Callable[[torch.Tensor], torch.Tensor]


def subset_indices(labels: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """``n`` test positions, stratified: classes taken in turn, each class's images in a seeded order.

    The first image of every class comes before the second of any, so ``n`` >= classes covers
    every class. Sorted; all images when ``n`` >= len(labels).
    """
    gen = torch.Generator().manual_seed(seed)
    per_class = [torch.nonzero(labels == c).flatten() for c in labels.unique(sorted=True).tolist()]
    per_class = [idx[torch.randperm(len(idx), generator=gen)] for idx in per_class]
    order = [int(idx[r]) for r in range(max(len(i) for i in per_class)) for idx in per_class if r < len(idx)]
    return torch.tensor(sorted(order[:n]), dtype=torch.long)


def random_grid_maps(n: int, h: int, w: int, seed: int) -> torch.Tensor:
    """[n, 1, h, w] i.i.d. U(0, 1) maps on the trunk grid from their own generator."""
    return torch.rand(n, 1, h, w, generator=torch.Generator().manual_seed(seed))


def interior_images(images: torch.Tensor, saliency: torch.Tensor, steps: int,
                    blur: torch.Tensor | None = None) -> torch.Tensor:
    """The perturbed images of steps 1 .. steps-1 of both modes: [2, steps - 1, B, 3, S, S].

    Step s changes the ``s * ceil(S*S / steps)`` most salient pixels, as
    :func:`lvwlib.core.faithfulness.perturbation_curve`; mode 0 deletes them (sets them to 0),
    mode 1 inserts them into the blurred image. Steps 0 and ``steps`` (the intact, black and
    blurred images) are shared by every map and are not repeated here. ``blur``: the images'
    blurred copy (:func:`lvwlib.core.faithfulness.blurred`) when the caller has made it already.
    """
    b, _, h, w = images.shape
    order = pixel_order(saliency)  # [B, HW]
    per_step = math.ceil(h * w / steps)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(h * w).expand(b, -1).contiguous())
    rank = rank.view(b, 1, h, w)
    blur = blurred(images) if blur is None else blur
    out = torch.empty(2, steps - 1, *images.shape)
    for s in range(1, steps):
        changed = rank < s * per_step
        out[0, s - 1] = torch.where(changed, torch.zeros_like(images), images)
        out[1, s - 1] = torch.where(changed, images, blur)
    return out


class Perturbed:
    """Trunk features of a subset's intact, black and blurred images, and of any map's interior steps."""

    def __init__(self, trunk: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, steps: int,
                 batch_size: int = 64) -> None:
        self.trunk, self.images, self.steps, self.batch_size = trunk, images, steps, batch_size
        b = images.shape[0]
        self.blurred_images = blurred(images)  # [B, 3, S, S]: every map's insertion starts from it
        ends = self.features(torch.cat([images, torch.zeros_like(images), self.blurred_images]))
        self.intact, self.black, self.blur = ends[:b], ends[b : 2 * b], ends[2 * b :]

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """images [N, 3, S, S] in [0, 1] -> trunk features [N, Ct, h, w], in batches."""
        return torch.cat([self.trunk(images[i : i + self.batch_size]).float()
                          for i in range(0, images.shape[0], self.batch_size)])

    def interior(self, saliency: torch.Tensor) -> torch.Tensor:
        """Features [2, steps - 1, B, Ct, h, w] of :func:`interior_images` of ``saliency`` [B, S, S]."""
        x = interior_images(self.images, saliency, self.steps, self.blurred_images)
        feats = self.features(x.flatten(0, 2))
        return feats.view(2, self.steps - 1, self.images.shape[0], *feats.shape[1:])

    @torch.no_grad()
    def curves(self, head: Head, interior: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Deletion and insertion curves [B, steps + 1] of ``target`` [B] under ``head``."""

        def prob(feats: torch.Tensor) -> torch.Tensor:  # [B, Ct, h, w] -> [B]
            return torch.softmax(head(feats).float(), dim=1)[torch.arange(len(target)), target]

        inner = [[prob(interior[m, s]) for s in range(self.steps - 1)] for m in range(2)]
        deletion = torch.stack([prob(self.intact), *inner[0], prob(self.black)], dim=1)
        insertion = torch.stack([prob(self.blur), *inner[1], prob(self.intact)], dim=1)
        return {"deletion": deletion, "insertion": insertion}


def method_head(model: TrainedModel, m: int) -> Head:
    """The logits of a trained method on trunk features."""
    return lambda feats: model.explain(feats, m)[0]


def trunk_runner(prep: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """The dataset's frozen trunk (images [N, 3, S, S] in [0, 1] -> [N, Ct, h, w]) in its configured runtime."""
    run = prep.exp.run
    size = run.data.image_size
    return make_trunk_runner(prep.backbone.trunk, run.backbone.runtime, size,
                             trunk_onnx_path(resolve(run.cache_dir), run.backbone, size),
                             trunk_onnx_inputs(run.backbone, size))


def faithfulness_curves(
    prep: Any, base: Any, models: dict[str, TrainedModel], n_images: int, steps: int, subset_seed: int = 0,
    trunk: Callable[[torch.Tensor], torch.Tensor] | None = None, batch_size: int = 64, cache: bool = True,
) -> dict[str, dict[str, Any]]:
    """Curves of every row of one dataset and seed, each cached per (dataset, seed, row).

    Args:
        prep, base: the dataset's prepared data and the base model of the models' seed.
        models: method name -> trained model.
        n_images, steps: the subset size (:func:`subset_indices` with ``subset_seed``) and steps.
        trunk: images -> trunk features (default: :func:`trunk_runner`).
    Returns:
        row label -> {"images" [n], "target" [n], "deletion" [n, steps + 1], "insertion" [..],
        and for the methods "random_deletion", "random_insertion": the random map on that model}.
    """
    if steps < 2:
        raise ValueError(f"faithfulness steps must be >= 2, got {steps}")
    idx = subset_indices(prep.test_labels, n_images, subset_seed)
    m = prep.exp.run.eval.top_m
    settings = {"n_images": int(n_images), "steps": int(steps), "subset_seed": int(subset_seed),
                "images": idx.tolist()}
    code = code_fingerprint(*CODE)
    state: dict[str, Any] = {}  # trunk passes shared by every row, made on the first cache miss

    def perturbed() -> Perturbed:
        if "p" not in state:
            images = torch.stack([prep.bundle.test[int(i)][0] for i in idx]).float()
            state["p"] = Perturbed(trunk or trunk_runner(prep), images, steps, batch_size)
            h, w = prep.test_feats.shape[-2:]
            sal = combined_word_map(random_grid_maps(len(idx), h, w, subset_seed), images.shape[-1], "minmax")
            state["random"] = state["p"].interior(sal)
        return state["p"]

    def row(head: Head, saliency_of: Callable[[torch.Tensor], torch.Tensor] | None) -> dict[str, Any]:
        p = perturbed()
        target = head(p.intact).argmax(dim=1)
        out: dict[str, Any] = {"images": idx, "target": target}
        rand = p.curves(head, state["random"], target)
        if saliency_of is None:  # the random row itself
            return {**out, **rand}
        out.update(p.curves(head, p.interior(saliency_of(p.intact)), target))
        out.update({f"random_{k}": v for k, v in rand.items()})
        return out

    size = prep.exp.run.data.image_size
    base_label = registry.label(registry.reference())
    cams = base.test_cams[idx, 0].float()
    entries: list[tuple[str, dict[str, Any], Head, Any]] = [
        (base_label, base.inputs, base.model, lambda _f: upsample_cam(cams, size)),
        (RANDOM_ROW, base.inputs, base.model, None),
    ]
    for model in models.values():
        entries.append((model.label, model.inputs, method_head(model, m),
                        lambda f, model=model: combined_word_map(model.explain(f, m)[1].detach().float(), size,
                                                                 "minmax")))
    cache_dir = resolve(prep.exp.run.cache_dir)
    out = {}
    with torch.no_grad():
        for label, inputs, head, saliency_of in entries:
            key = {**inputs, "faithfulness": {**settings, "row": label}}
            out[label] = cached(cache_dir, KIND, key, lambda h=head, s=saliency_of: row(h, s), code=code,
                                enabled=cache)
    return out


def curve_rows(curves: dict[str, dict[str, Any]], dataset: str, seed: int) -> pd.DataFrame:
    """Per-image AUCs: dataset, seed, row, image, deletion, insertion (and random_* for the methods)."""
    frames = []
    for label, c in curves.items():
        frame = pd.DataFrame({"dataset": dataset, "seed": seed, "row": label, "image": c["images"].tolist()})
        for key in ("deletion", "insertion", "random_deletion", "random_insertion"):
            frame[key] = curve_auc(c[key]).numpy() if key in c else np.nan
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def mean_curves(curves: dict[str, dict[str, Any]], dataset: str, seed: int) -> pd.DataFrame:
    """Curves averaged over the subset: dataset, seed, row, mode, fraction (of pixels changed), probability."""
    rows = []
    for label, c in curves.items():
        for mode in MODES:
            mean = c[mode].float().mean(dim=0)
            k = len(mean) - 1
            rows += [{"dataset": dataset, "seed": seed, "row": label, "mode": mode, "fraction": i / k,
                      "probability": float(v)} for i, v in enumerate(mean)]
    return pd.DataFrame(rows)


def summary(per_image: pd.DataFrame) -> pd.DataFrame:
    """Mean ± sd over seeds (of each seed's mean over the subset) per dataset and row."""
    per_seed = per_image.groupby(["dataset", "row", "seed"], sort=False)[["deletion", "insertion"]].mean()
    g = per_seed.groupby(["dataset", "row"], sort=False)
    out = g.mean().add_suffix(" mean").join(g.std().add_suffix(" sd"))
    out["seeds"] = g.size()
    out["images"] = per_image.groupby(["dataset", "row", "seed"], sort=False).size().groupby(
        ["dataset", "row"], sort=False).first()
    return out.reset_index()


def summary_markdown(per_image: pd.DataFrame, n_images: int, steps: int) -> str:
    """The faithfulness table as markdown (``mean ± sd`` over seeds)."""
    s = summary(per_image)
    table = s[["dataset", "row", "seeds", "images"]].copy()
    for col in ("deletion", "insertion"):
        table[f"{col} AUC"] = mean_sd_cells(s[f"{col} mean"], s[f"{col} sd"])
    return ("# Deletion / insertion faithfulness\n\nEach row's map on its own model's predicted class, the "
            f"whole model (trunk included) re-run on {n_images} test images per dataset and seed (stratified, "
            f"seeded), {steps} steps. Deletion AUC: lower is better; insertion AUC: higher is better. "
            f"{RANDOM_ROW}: uniform noise on the trunk grid, on the base model. Mean ± sd over seeds.\n\n"
            + table.to_markdown(index=False) + "\n")


def plot_curves(curves: pd.DataFrame) -> plt.Figure:
    """Deletion (top) and insertion (bottom) curves per dataset (columns), one line per row, averaged over seeds."""
    datasets = list(dict.fromkeys(curves["dataset"]))
    fig, axes = plt.subplots(2, len(datasets), figsize=(4 * len(datasets), 6), squeeze=False, sharey=True)
    mean = curves.groupby(["dataset", "row", "mode", "fraction"], sort=False)["probability"].mean().reset_index()
    for c, d in enumerate(datasets):
        for r, mode in enumerate(MODES):
            ax = axes[r, c]
            part = mean[(mean["dataset"] == d) & (mean["mode"] == mode)]
            for label, g in part.groupby("row", sort=False):
                ax.plot(g["fraction"], g["probability"], label=label, linestyle="--" if label == RANDOM_ROW else "-")
            ax.set_title(f"{d}: {mode}", fontsize=9)
            ax.set_xlabel("fraction of pixels " + ("deleted" if mode == "deletion" else "inserted"))
            if c == 0:
                ax.set_ylabel("probability of the predicted class")
    axes[0, -1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))  # outside: the curves stay visible
    fig.tight_layout()
    return fig
