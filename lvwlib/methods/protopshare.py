"""ProtoPShare baseline (Rymarczyk, Struski, Tabor, Zielinski, KDD 2021) on cached trunk features.

ProtoPShare starts from a trained ProtoPNet (10 class-specific prototypes per
class) and reduces the number of prototypes by *data-dependent merge-pruning*,
so that one prototype can be shared by several classes:

1. Describe every prototype p by how it sees the training data: the vector of
   its minimum squared patch distances over the training images,
   ``g_p = (min_patches ||z - p||^2 for each image x)`` [N]. Two prototypes are
   similar when they respond alike to the same images, even if they are far
   apart in latent space (the paper's "data-dependent similarity"; its code
   takes the same [N, M] ``min_distances`` of ProtoPNet's forward pass over the
   unaugmented push set).
2. Merge the most similar pairs: the kept prototype ``keep`` absorbs ``remove``:
   its last-layer column becomes the sum of both columns (so each class keeps
   the evidence it had from both), its class identities become the union of
   both, and ``remove`` is deleted.
3. Push the words again (class-specific: a word may only take a patch of an
   image of one of its classes, which for a merged word is ANY of its classes),
   then fine-tune the last layer (CE + L1 on connections to classes outside each
   word's identities).
4. Repeat for a fixed number of steps.

Schedule (defaults of :class:`ProtoPShareConfig`): each step merges 10 % of the
*initial* number of prototypes (the reference code's ``no_p = 200`` of 2000;
the paper's zeta = 10 %), 8 steps, i.e. 80 % pruned, the setting of the
400-of-2000-prototype CUB model the paper reports. Each step fine-tunes the last
layer for 25 passes (the reference code's 25 last-layer iterations).

Differences from the public reference code (``gmum/ProtoPShare``), on purpose:

- Pairs are merged greedily and disjointly (each prototype in at most one merge
  per step). The reference instead thresholds distances at the k-th smallest
  nearest-neighbour distance and lets a prototype absorb every prototype under
  the threshold, so the number actually removed per step varies (about half of
  ``no_p`` when nearest neighbours are mutual); disjoint pairs remove exactly the
  scheduled number and match the paper's description in terms of pairs.
- A merged prototype is pushed onto patches of ANY of its classes; the
  reference pushes it onto its first class only. (After a ProtoPNet push the kept
  word already lies on a patch of one of its classes, so this push usually keeps
  it in place; it matters when it does not, and it re-records every word's source
  patch, whose indices shift when words are removed.)
- The reference calls a pruning function that it never defines
  (``classic_prune``) and selects fine-tuning iterations by test accuracy; here
  nothing looks at the test set.
- Joint training continues between merge steps in the reference (merging happens
  inside its training loop, after the push of every 5th epoch); by default only the
  last layer is fine-tuned, as the LVW paper's baseline description and method.md
  section 5 say. ``joint_epochs`` (with ``lr_tail``, ``lr_words``, ``lr_last``,
  ``weight_decay``, ``lr_decay_every``) runs the reference's joint epochs before
  each merge step, then a push, as an option (docs/choices.md). The reference's
  optimisers keep slices of the pre-merge words and last layer (proto_join.py:113-117),
  so after its first merge its words and last layer no longer train; here a fresh
  optimiser trains them.

:func:`curve` records the validation accuracy after each merge step
(``python -m lvwlib calibrate --curve protopshare --curve-epochs 8``).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from lvwlib.core.batches import as_source
from lvwlib.core.config import LVWConfig, RunConfig
from lvwlib.core.devices import Runtime, model_runtime
from lvwlib.core.model import PrototypeNet
from lvwlib.core.push import PushRecord, push_words
from lvwlib.core.train import (
    joint_epoch,
    joint_lr,
    joint_optimiser,
    set_joint_lrs,
    train_last_layer,
)
from lvwlib.methods import protonet
from lvwlib.methods.registry import FitContext, Fitted, Method, register


@dataclass(frozen=True)
class ProtoPShareConfig:
    merge_fraction: float = 0.1  # zeta: merges per step as a fraction of the INITIAL prototypes (paper 10 %; code no_p = 200 of 2000)
    steps: int = 8  # merge-pruning steps; 8 x 10 % = 80 % pruned (paper's CUB model: 400 of 2000 prototypes)
    finetune_epochs: int = 25  # last-layer passes after each merge step (reference code: 25 iterations)
    seed: int = 0  # seed of the fine-tuning data order and flips
    batch_size: int = 64  # images per batch for descriptors, push and fine-tuning
    # Joint epochs (tail, add-on, words; last layer fixed; the ProtoPNet's losses and batch size) before
    # each merge step, then a push. 0: none (last layer only, as the LVW paper describes the baseline);
    # the reference code: 5 (push and merge every 5 epochs of its training loop).
    joint_epochs: int = 0
    # Learning rates and weight decay of those joint epochs and of the fine-tuning; None: the
    # ProtoPNet's (its lvw_cfg). Reference code: lr_tail 1e-4, lr_words 3e-3, lr_last 1e-4, 1e-3.
    lr_tail: float | None = None
    lr_words: float | None = None
    lr_last: float | None = None
    weight_decay: float | None = None
    # Joint lrs x 0.1 every N joint epochs counted over the whole schedule, never below the
    # ProtoPNet's lr_floor; 0: constant. Reference code: 5 (StepLR over its loop, no floor), so the
    # k-th merge's joint epochs run at 10^-(k-1) of the initial lrs.
    lr_decay_every: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.merge_fraction < 1.0:
            raise ValueError(f"merge_fraction must be in (0, 1), got {self.merge_fraction}")
        if self.steps < 0 or self.finetune_epochs < 0 or self.batch_size < 1:
            raise ValueError("steps and finetune_epochs must be >= 0 and batch_size >= 1")
        if self.joint_epochs < 0 or self.lr_decay_every < 0:
            raise ValueError("joint_epochs and lr_decay_every must be >= 0")
        if self.weight_decay is not None and self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")

    @property
    def pruned_fraction(self) -> float:
        """Scheduled fraction of the initial prototypes removed after all steps. Fewer go when
        a step runs out of disjoint pairs (at most half the current words merge per step)."""
        return min(self.steps * self.merge_fraction, 1.0)


# ----------------------------------------------------------------------------- similarity


@torch.no_grad()
def min_distance_descriptors(
    model: PrototypeNet, feats: torch.Tensor, batch_size: int = 64, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Data-dependent description of every prototype.

    Args:
        model: the prototype network (put in eval mode).
        feats: [N, 2, Ct, h, w] cached trunk features; only index 0 (unflipped) is
            used, the unaugmented training set the reference code describes
            prototypes on (its push loader).
        batch_size: images per forward pass.
    Returns:
        [M, N]: row j holds, for every training image, the smallest squared
        distance between any of its patches and word j (``min_distances`` of the
        forward pass).
    """
    model.eval()
    rows = []
    for start in range(0, feats.shape[0], batch_size):
        x = feats[start : start + batch_size, 0].float().to(device)
        rows.append(model(x).min_distances)  # [B, M]
    return torch.cat(rows).T.contiguous()


def pairwise_descriptor_distances(desc: torch.Tensor) -> torch.Tensor:
    """Euclidean distance between the descriptors of every pair of prototypes.

    Args:
        desc: [M, N] descriptors (:func:`min_distance_descriptors`).
    Returns:
        [M, M] float32, symmetric, ``+inf`` on the diagonal so a prototype is never
        its own closest match. (The paper sums squared differences; the square root
        does not change which pairs are closest.) Computed in float64 as
        ``|a|^2 + |b|^2 - 2 a.b`` clamped at 0: the float32 expansion loses the
        small differences between near-duplicate descriptors.
    """
    d = desc.double()
    sq = (d**2).sum(dim=1)
    dist2 = torch.clamp(sq[:, None] + sq[None, :] - 2.0 * d @ d.T, min=0.0)
    dist = dist2.sqrt().float()
    dist.fill_diagonal_(float("inf"))
    return dist


# ----------------------------------------------------------------------------- merging


def plan_merges(dist: torch.Tensor, n_merges: int) -> list[tuple[int, int]]:
    """Choose the pairs to merge: the closest pairs, greedily and disjointly.

    Pairs are taken in order of increasing distance (ties: lower indices first);
    a pair is skipped when one of its prototypes already takes part in a merge of
    this step, so every merge is exactly one pair and removes exactly one word.
    Non-finite distances (the diagonal) are never merged.

    Args:
        dist: [M, M] symmetric distances (:func:`pairwise_descriptor_distances`).
        n_merges: how many pairs to merge; fewer are returned when fewer disjoint
            pairs exist (at most M // 2).
    Returns:
        ``[(keep, remove), ...]`` in the order chosen, with ``keep < remove``: the
        lower index is kept, as in the reference code.
    """
    m = dist.shape[0]
    if dist.shape != (m, m):
        raise ValueError(f"expected a square distance matrix, got {tuple(dist.shape)}")
    if n_merges <= 0 or m < 2:
        return []
    i, j = torch.triu_indices(m, m, offset=1)
    values = dist[i, j].double()
    finite = torch.isfinite(values)
    i, j, values = i[finite], j[finite], values[finite]
    # Stable sort on the distance over pairs listed in row-major order: ties
    # resolve to lower indices, so the plan is deterministic.
    order = torch.sort(values, stable=True).indices
    used = [False] * m  # plain Python lists: M = 2000 gives ~2e6 candidate pairs
    plan: list[tuple[int, int]] = []
    for a, b in zip(i[order].tolist(), j[order].tolist(), strict=True):
        if used[a] or used[b]:
            continue
        used[a] = used[b] = True
        plan.append((a, b))
        if len(plan) == n_merges:
            break
    return plan


@torch.no_grad()
def apply_merges(model: PrototypeNet, plan: list[tuple[int, int]]) -> torch.Tensor:
    """Merge words in place: each ``keep`` absorbs its ``remove``, which is deleted.

    For every ``(keep, remove)``: last-layer column ``keep`` := column keep +
    column remove (each class keeps the evidence both words gave it);
    ``word_classes[keep]`` := OR of both rows (the merged word carries both class
    identities, which the class-specific push and L1 mask then respect); the word
    vector of ``keep`` is left as it is.

    ``words``, ``last_layer`` and the ``word_classes`` buffer are rebuilt with
    M - len(plan) words (new Parameter, new Linear, re-registered buffer), so
    ``state_dict`` and any optimiser built afterwards see consistent shapes.
    Optimisers built before the merge hold the old parameters: build new ones.

    Args:
        model: the network, modified in place.
        plan: disjoint ``(keep, remove)`` pairs of current word indices.
    Returns:
        [M'] long: for each word of the merged model, its index before the merge.
    """
    m = model.num_words
    flat = [idx for pair in plan for idx in pair]
    if any(not 0 <= idx < m for idx in flat):
        raise ValueError(f"merge plan refers to words outside 0..{m - 1}: {plan}")
    if len(set(flat)) != len(flat):
        raise ValueError(f"merge plan pairs must be disjoint, got {plan}")
    weight = model.last_layer.weight.detach().clone()  # [C, M]
    classes = model.word_classes.detach().clone()  # [M, C]
    for keep, remove in plan:
        weight[:, keep] += weight[:, remove]
        classes[keep] = torch.maximum(classes[keep], classes[remove])
    removed = torch.tensor(sorted(r for _, r in plan), dtype=torch.long)
    kept = torch.ones(m, dtype=torch.bool)
    kept[removed] = False
    kept_idx = torch.nonzero(kept).flatten()

    old_words = model.words
    model.words = nn.Parameter(
        old_words.detach()[kept_idx].clone(), requires_grad=old_words.requires_grad
    )
    old_last = model.last_layer
    new_last = nn.Linear(len(kept_idx), old_last.out_features, bias=False).to(
        device=old_last.weight.device, dtype=old_last.weight.dtype
    )
    new_last.weight.copy_(weight[:, kept_idx])
    new_last.weight.requires_grad_(old_last.weight.requires_grad)
    model.last_layer = new_last
    # Assigning a tensor to a registered buffer's name replaces the buffer.
    model.word_classes = classes[kept_idx].clone()
    return kept_idx


def merge_step(model: PrototypeNet, dist: torch.Tensor, n_merges: int) -> list[tuple[int, int]]:
    """:func:`plan_merges` then :func:`apply_merges`; returns the plan (pre-merge indices)."""
    plan = plan_merges(dist, n_merges)
    apply_merges(model, plan)
    return plan


# ----------------------------------------------------------------------------- schedule


class _FixedLatents:
    """The latent maps Z of every training image, computed once while the tail and add-on are fixed.

    Between two trainings of the tail and add-on only the words and the last layer change, so
    the passes over the training set (push, descriptors, push, word scores) would compute the
    same Z again and again: without joint epochs Z is computed once for the whole merge
    schedule, with them once per merge step, after that step's joint epochs. Z is computed
    here with exactly the batches those passes use (a convolution's float result may depend on
    how many images share its batch), and the passes then run on Z with the tail and add-on
    swapped for identities: the same floats, bit for bit.

    ``first``: [N, 1, D, h, w], unflipped images in batches of ``batch_size`` (descriptors
    and push); ``both``: [N, 2, D, h, w], both orientations in the batches of
    :func:`lvwlib.core.train.word_scores` (256 images, image-major).
    """

    def __init__(self, model: PrototypeNet, feats: torch.Tensor, batch_size: int, device: torch.device) -> None:
        n = feats.shape[0]
        with torch.no_grad():
            first = [model.latent(feats[s : s + batch_size, 0].float().to(device)) for s in range(0, n, batch_size)]
            self.first = torch.cat(first)[:, None]
            both = []
            for s in range(0, n, SCORES_BATCH):
                x = feats[s : s + SCORES_BATCH][:, [0, 1]].flatten(0, 1).float().to(device)
                z = model.latent(x)
                both.append(z.view(-1, 2, *z.shape[1:]))
            self.both = torch.cat(both)
        self.tail, self.add_on = model.tail, model.add_on

    def bypass(self, model: PrototypeNet) -> None:
        """The passes read Z: tail and add-on become identities."""
        model.tail, model.add_on = nn.Identity(), nn.Identity()

    def restore(self, model: PrototypeNet) -> None:
        model.tail, model.add_on = self.tail, self.add_on


SCORES_BATCH = 256  # the batch of lvwlib.core.train.word_scores (its default), which train_last_layer uses


def protopshare(
    model: PrototypeNet,
    feats: torch.Tensor,
    labels: torch.Tensor,
    cfg: ProtoPShareConfig,
    lvw_cfg: LVWConfig,
    progress: bool = True,
    evaluate: Callable[[PrototypeNet], dict[str, float]] | None = None,
    runtime: Runtime | None = None,
) -> dict[str, Any]:
    """Merge-prune a trained ProtoPNet; the input model is not modified.

    Per step: descriptors -> pairwise distances -> merge the ``round(merge_fraction
    * M0)`` closest disjoint pairs -> class-specific push -> last-layer fine-tuning.

    Args:
        model: trained ProtoPNet (class-specific words, pushed); deep-copied.
        feats: [N, 2, Ct, h, w] cached trunk features of the training set.
        labels: [N].
        cfg: the merge schedule.
        lvw_cfg: the ProtoPNet's training config; its ``gamma_l1``, ``lr_last``
            are used for fine-tuning, with ``class_specific=True`` forced (L1
            only on connections to classes outside each word's identities) and
            ``last_layer_epochs = cfg.finetune_epochs``; its losses, batch size and
            lrs for the joint epochs (``cfg.joint_epochs``); ``cfg``'s lrs and weight
            decay replace its own where set (:func:`step_config`).
        evaluate: called with the model after each step; its dict joins that
            step's row (e.g. test accuracy, never used for selection).
    Returns:
        dict with ``model`` (the pruned copy), ``words_before`` (M0),
        ``words_after``, ``steps`` (one row per step: words before/after, number
        of merges, the merged pairs in that step's indices and as groups of
        original ProtoPNet word ids, mean descriptor distance of the merged pairs,
        fine-tuning loss/accuracy, number of shared words), ``origins``
        (for every final word, the sorted original ProtoPNet word ids merged
        into it), ``push`` (the last :class:`PushRecord` as rows, or None if no
        step ran) and ``config`` (the schedule as a dict).
    """
    runtime = model_runtime(model, runtime)
    model = copy.deepcopy(model).to(runtime.device)
    model.eval()
    words_before = model.num_words
    per_step = max(1, round(cfg.merge_fraction * words_before))
    ft_cfg = step_config(cfg, lvw_cfg)
    generator = torch.Generator().manual_seed(cfg.seed)
    origins: list[list[int]] = [[j] for j in range(words_before)]
    rows, origins, record = _merge_steps(model, feats, labels, cfg, ft_cfg, per_step, origins, generator,
                                         progress, evaluate, runtime)
    return {
        "model": model,
        "words_before": words_before,
        "words_after": model.num_words,
        "steps": rows,
        "origins": origins,
        "push": record.as_rows() if record is not None else None,
        "config": dataclasses.asdict(cfg),
    }


def step_config(cfg: ProtoPShareConfig, lvw_cfg: LVWConfig) -> LVWConfig:
    """The ProtoPNet's config as the merge steps train with it: class-specific, ``cfg.finetune_epochs``
    last-layer passes, no alignment, ProtoPShare's lr decay of the joint epochs, and its learning
    rates and weight decay where set (None: the ProtoPNet's)."""
    own = {k: getattr(cfg, k) for k in ("lr_tail", "lr_words", "lr_last", "weight_decay") if getattr(cfg, k) is not None}
    return dataclasses.replace(
        lvw_cfg, class_specific=True, last_layer_epochs=cfg.finetune_epochs, beta_align=0.0,
        lr_decay_every=cfg.lr_decay_every, **own,
    )


def _joint_epochs(
    model: PrototypeNet, source: Any, cfg: ProtoPShareConfig, ft_cfg: LVWConfig, done: int,
    generator: torch.Generator, runtime: Runtime,
) -> dict[str, float]:
    """``cfg.joint_epochs`` joint epochs (``done`` joint epochs before them, for the lr decay); the
    caller then pushes every word onto a patch of one of its classes: the reference pushes, then merges.

    A fresh Adam each step: after a merge the words are a new parameter. (The reference keeps its
    optimisers and points their words / last-layer entries at slices of the old tensors,
    proto_join.py:113-117, so after the first merge only its tail and add-on train.)
    Returns the last joint epoch's mean losses and train accuracy.
    """
    optimiser = joint_optimiser(model, ft_cfg.lr_tail, ft_cfg.lr_words, ft_cfg.weight_decay)
    row: dict[str, float] = {}
    for epoch in range(done, done + cfg.joint_epochs):
        set_joint_lrs(optimiser, joint_lr(ft_cfg.lr_tail, epoch, ft_cfg), joint_lr(ft_cfg.lr_words, epoch, ft_cfg))
        row = joint_epoch(model, source, ft_cfg, optimiser, generator, runtime)
    model.eval()
    return row


def _latents(model: PrototypeNet, feats: torch.Tensor, cfg: ProtoPShareConfig, runtime: Runtime) -> _FixedLatents | None:
    """Z of the training set for the passes until the tail and add-on train again, the tail and
    add-on bypassed (undo with ``restore``); None under autocast, where the passes' latents differ
    (push autocasts, the descriptors do not): every pass then computes Z itself."""
    if runtime.amp_active:
        return None
    fixed = _FixedLatents(model, feats, cfg.batch_size, runtime.device)
    fixed.bypass(model)
    return fixed


def _merge_steps(
    model: PrototypeNet, feats: torch.Tensor, labels: torch.Tensor, cfg: ProtoPShareConfig, ft_cfg: LVWConfig,
    per_step: int, origins: list[list[int]], generator: torch.Generator, progress: bool,
    evaluate: Callable[[PrototypeNet], dict[str, float]] | None, runtime: Runtime,
) -> tuple[list[dict[str, Any]], list[list[int]], PushRecord | None]:
    """The merge-prune schedule of :func:`protopshare`: (rows, origins, last push record)."""
    rows: list[dict[str, Any]] = []
    record: PushRecord | None = None
    source = as_source(feats, labels, None, runtime.device) if cfg.joint_epochs > 0 else None
    fixed: _FixedLatents | None = None
    bar = tqdm(range(cfg.steps), desc="ProtoPShare", disable=not progress)
    try:
        for step in bar:
            joint: dict[str, float] = {}
            if cfg.joint_epochs > 0:
                if fixed is not None:  # the tail and add-on train again: Z goes stale
                    fixed.restore(model)
                    fixed = None
                joint = _joint_epochs(model, source, cfg, ft_cfg, step * cfg.joint_epochs, generator, runtime)
            if fixed is None:
                fixed = _latents(model, feats, cfg, runtime)
            first = fixed.first if fixed is not None else feats  # what descriptors and push read
            both = fixed.both if fixed is not None else feats  # what the last-layer stage's word scores read
            if cfg.joint_epochs > 0:  # the reference pushes after its joint epochs, then merges
                push_words(model, first, labels, class_specific=True, batch_size=cfg.batch_size, progress=False,
                           runtime=runtime)
            merged = _merge_step(model, first, both, labels, cfg, ft_cfg, per_step, origins, generator, runtime,
                                 step + 1)
            if merged is None:  # a single word left: nothing to merge
                break
            row, origins, record = merged
            row.update({f"joint_{k}": v for k, v in joint.items()})
            if evaluate is not None:  # on images: with the real tail and add-on
                if fixed is not None:
                    fixed.restore(model)
                row.update(evaluate(model))
                if fixed is not None:
                    fixed.bypass(model)
            rows.append(row)
            bar.set_postfix(words=model.num_words)
    finally:
        if fixed is not None:
            fixed.restore(model)
    bar.close()
    return rows, origins, record


def _merge_step(
    model: PrototypeNet, first: torch.Tensor, both: torch.Tensor, labels: torch.Tensor, cfg: ProtoPShareConfig,
    ft_cfg: LVWConfig, per_step: int, origins: list[list[int]], generator: torch.Generator, runtime: Runtime,
    step: int,
) -> tuple[dict[str, Any], list[list[int]], PushRecord] | None:
    """Merge step number ``step`` (from 1) on ``first`` / ``both`` (trunk features, or Z with the tail
    and add-on bypassed): descriptors -> pairs -> merge -> push -> last-layer fine-tuning.
    Returns (the step's row without its joint-epoch and evaluation fields, the new origins, the
    push record); None when nothing merges (a single word left)."""
    m = model.num_words
    desc = min_distance_descriptors(model, first, cfg.batch_size, runtime.device)  # [M, N]
    dist = pairwise_descriptor_distances(desc)  # [M, M]
    plan = plan_merges(dist, per_step)
    if not plan:
        return None
    merged_distance = float(torch.stack([dist[a, b] for a, b in plan]).mean())
    original_groups = [(list(origins[a]), list(origins[b])) for a, b in plan]
    origins = list(origins)
    for keep, remove in plan:
        origins[keep] = sorted(origins[keep] + origins[remove])
    kept_idx = apply_merges(model, plan)
    origins = [origins[int(k)] for k in kept_idx]

    # A merged word may now take a patch of an image of ANY of its classes.
    record = push_words(
        model, first, labels, class_specific=True, batch_size=cfg.batch_size, progress=False,
        runtime=runtime,
    )
    # The last layer was rebuilt: a fresh optimiser over the new parameter.
    optimiser = torch.optim.Adam(model.last_layer.parameters(), lr=ft_cfg.lr_last)
    fit: dict[str, float] = {}
    if cfg.finetune_epochs > 0:
        fit = train_last_layer(
            model, both, labels, ft_cfg, optimiser, generator, batch_size=cfg.batch_size, runtime=runtime,
        )
    model.eval()
    row: dict[str, Any] = {
        "step": step,
        "words_before": m,
        "words_after": model.num_words,
        "merges": len(plan),
        "pairs": plan,
        "original_groups": original_groups,
        "merged_distance": merged_distance,
        "shared_words": int((model.word_classes.sum(dim=1) > 1).sum()),
        **{f"finetune_{k}": v for k, v in fit.items()},
    }
    return row, origins, record


# ----------------------------------------------------------------------------- the Table 1 row


def settings(run: RunConfig, sections: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """The merge schedule (``protopshare:`` section); the ProtoPNet it starts from is keyed as a need."""
    return {"protopshare": dataclasses.replace(sections["protopshare"], seed=seed)}


def curve(ctx: FitContext, epochs: int, eval_every: int = 1) -> list[dict[str, Any]]:
    """Validation accuracy against merge step: step 0 is the ProtoPNet it starts from, then one
    row after each of ``epochs`` merge steps (``--curve-epochs``: the number of steps, e.g. the
    schedule's 8; more shows where merging runs out). ``eval_every`` is not used: every step is
    evaluated. Rows: step, words_after, merges, shared_words, merged_distance, finetune_* and
    joint_* of the step, val_accuracy.
    """
    pnet = ctx.needed["protopnet"]
    feats, labels = ctx.data("train")
    val_feats, val_labels = ctx.data("val")
    device = ctx.runtime.device

    def val_accuracy(model: PrototypeNet) -> dict[str, float]:
        return {"val_accuracy": _accuracy(model, val_feats, val_labels, device)}

    cfg = dataclasses.replace(ctx.settings["protopshare"], steps=epochs)
    start = pnet.fitted.module
    rows: list[dict[str, Any]] = [{"step": 0, "words_after": start.num_words, **val_accuracy(start)}]
    shared = protopshare(start, feats, labels, cfg, pnet.settings["lvw"], progress=ctx.progress,
                         evaluate=val_accuracy, runtime=ctx.runtime)
    plain = [k for k in shared["steps"][0] if k not in ("pairs", "original_groups")] if shared["steps"] else []
    rows += [{k: row[k] for k in plain} for row in shared["steps"]]
    return rows


@torch.no_grad()
def _accuracy(model: PrototypeNet, feats: torch.Tensor, labels: torch.Tensor, device: torch.device | str,
              batch_size: int = 128) -> float:
    """Accuracy of ``model`` on the unflipped cached features [N, 2, Ct, h, w] of a split."""
    model.eval()
    correct = 0
    for start in range(0, len(labels), batch_size):
        x = feats[start : start + batch_size, 0].float().to(device)
        correct += (model(x).logits.argmax(1).cpu() == labels[start : start + batch_size]).sum().item()
    return correct / max(len(labels), 1)


def fit(ctx: FitContext) -> Fitted:
    """Merge-prune the trained ProtoPNet of this seed (its ``fit`` ran first, as a need)."""
    pnet = ctx.needed["protopnet"]
    feats, labels = ctx.data("train")
    shared = protopshare(
        pnet.fitted.module, feats, labels, ctx.settings["protopshare"], pnet.settings["lvw"],
        progress=ctx.progress, runtime=ctx.runtime,
    )
    model = shared["model"]
    extra = {"summary": {k: v for k, v in shared.items() if k != "model"}, "num_words": model.num_words}
    return Fitted(model, extra, words=protonet.word_sources(shared["push"]))


METHOD = register(Method(
    name="protopshare",
    label="ProtoPShare",
    code=("lvwlib.methods.protopshare",),
    settings=settings,
    fit=fit,
    build_args=protonet.build_args,
    rebuild=protonet.rebuild,
    explain=protonet.explain,
    config=ProtoPShareConfig,
    needs=("protopnet",),
    word_maps=protonet.word_maps,
    word_weights=protonet.word_weights,
    order=3,
    curve=curve,
))
