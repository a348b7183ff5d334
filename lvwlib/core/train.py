"""The three-stage training protocol of LVW / ProtoPNet (method.md section 3).

1. warm-up: add-on and words only (tail frozen);
2. joint: tail, add-on and words, last layer fixed;
3. every ``push_every`` joint epochs and after the last: push, then the
   last-layer stage (last layer only, CE + L1).

``weight_decay`` (ProtoPNet's code: 1e-3) decays the tail and add-on in stages 1-2, never the
words nor the last layer.

A checkpoint (model, optimisers, RNG state, history and the config) is written
after every epoch; :func:`train_prototype_net` resumes from it when the config
matches, and refuses a checkpoint of another config.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from lvwlib.core import distributed as dist
from lvwlib.core.batches import as_source, iterate_batches
from lvwlib.core.config import LVWConfig, to_dict
from lvwlib.core.devices import CPU, Runtime, backward_step, evaluation, model_runtime
from lvwlib.core.losses import alignment_loss, cluster_loss, l1_last_layer, separation_loss
from lvwlib.core.model import PrototypeNet, log_similarity
from lvwlib.core.push import PushRecord, push_words
from lvwlib.core.seeding import seed_everything
from lvwlib.store.cache import StaleCacheError, key_lock
from lvwlib.store.records import save_with


@dataclass
class TrainState:
    """Everything needed to resume: counters, history and push records."""

    epochs_done: int = 0  # warm-up + joint epochs completed (each followed by its push, if due)
    history: list[dict[str, Any]] = field(default_factory=list)
    pushes: list[list[dict[str, float]]] = field(default_factory=list)


def joint_lr(base_lr: float, joint_epoch: int, cfg: LVWConfig) -> float:
    """Step decay every ``lr_decay_every`` joint epochs, never below ``lr_floor``.

    The reference code decays with no floor, which drives the joint learning
    rates to ~0 after ~30 epochs; the floor keeps long runs learning.
    """
    if cfg.lr_decay_every <= 0:
        return base_lr
    return max(base_lr * cfg.lr_decay ** (joint_epoch // cfg.lr_decay_every), cfg.lr_floor)


def _add_on_and_word_groups(model: PrototypeNet, lr_words: float, weight_decay: float) -> list[dict[str, Any]]:
    """Adam groups of the add-on and the words, both at ``lr_words``.

    With ``weight_decay`` 0 one group, as before the option existed; otherwise two, since
    ProtoPNet's code decays the add-on (1e-3) and never the words.
    """
    add_on, words = list(model.add_on.parameters()), [model.words]
    if weight_decay == 0:
        return [{"params": [*add_on, *words], "lr": lr_words}]
    return [{"params": add_on, "lr": lr_words, "weight_decay": weight_decay}, {"params": words, "lr": lr_words}]


def warm_optimiser(model: PrototypeNet, lr_words: float, weight_decay: float = 0.0) -> torch.optim.Adam:
    """Adam of the warm-up: add-on and words at ``lr_words``; weight decay on the add-on only."""
    return torch.optim.Adam(_add_on_and_word_groups(model, lr_words, weight_decay))


def joint_optimiser(
    model: PrototypeNet, lr_tail: float, lr_words: float, weight_decay: float = 0.0
) -> torch.optim.Adam:
    """Adam of the joint stage: the tail at ``lr_tail`` (group 0), add-on and words at ``lr_words``.

    Weight decay (L2, Adam's ``weight_decay``) goes to the tail and the add-on, never to the words
    (ProtoPNet's main.py); :func:`set_joint_lrs` sets the lrs of either form.
    """
    tail: dict[str, Any] = {"params": model.tail.parameters(), "lr": lr_tail}
    if weight_decay != 0:
        tail["weight_decay"] = weight_decay
    return torch.optim.Adam([tail, *_add_on_and_word_groups(model, lr_words, weight_decay)])


def set_joint_lrs(optimiser: torch.optim.Optimizer, lr_tail: float, lr_words: float) -> None:
    """Learning rates of a :func:`joint_optimiser`: group 0 (tail) ``lr_tail``, the others ``lr_words``."""
    for i, group in enumerate(optimiser.param_groups):
        group["lr"] = lr_tail if i == 0 else lr_words


def push_due(joint_epoch: int, cfg: LVWConfig) -> bool:
    """Push after joint epoch ``joint_epoch`` (1-based)? Every N epochs and after the last."""
    return joint_epoch == cfg.joint_epochs or (cfg.push_every > 0 and joint_epoch % cfg.push_every == 0)


def train_prototype_net(
    model: PrototypeNet,
    feats: Any,
    labels: torch.Tensor | None,
    cams: torch.Tensor | None,
    cfg: LVWConfig,
    checkpoint: str | Path | None = None,
    evaluate: Callable[[PrototypeNet], dict[str, float]] | None = None,
    progress: bool = True,
    runtime: Runtime | None = None,
) -> TrainState:
    """Train ``model`` in place with the three-stage protocol (see :func:`_train_prototype_net`).

    With a checkpoint, training holds that checkpoint's inter-process lock, so
    two processes (e.g. the protopnet and protopshare cells of one seed) never
    train the same network at once: the second waits, then resumes the finished
    checkpoint.
    """
    lock = key_lock(Path(checkpoint).with_suffix("")) if checkpoint is not None else nullcontext()
    with lock:
        return _train_prototype_net(model, feats, labels, cams, cfg, checkpoint, evaluate, progress, runtime)


def _train_prototype_net(
    model: PrototypeNet,
    feats: Any,
    labels: torch.Tensor | None,
    cams: torch.Tensor | None,
    cfg: LVWConfig,
    checkpoint: str | Path | None = None,
    evaluate: Callable[[PrototypeNet], dict[str, float]] | None = None,
    progress: bool = True,
    runtime: Runtime | None = None,
) -> TrainState:
    """Train ``model`` in place with the three-stage protocol.

    Args:
        model: freshly built network (its tail is trained in place).
        feats: [N, 2, Ct, h, w] cached trunk features (original, flipped), or a
            batch source (:class:`lvwlib.core.batches.CachedSource`,
            :class:`lvwlib.core.streaming.StreamingSource`; then ``labels`` and
            ``cams`` are ignored: the source carries them).
        labels: [N].
        cams: [N, 2, hc, wc] base-model Grad-CAM of the same images and flips;
            required when ``cfg.beta_align > 0``.
        runtime: device and autocast mode (None: float32 where the model is);
            the model is moved to its device.
        cfg: the LVW (or ProtoPNet) configuration.
        checkpoint: file to write after every epoch and to resume from.
        evaluate: called with the model after every last-layer stage; its dict
            is added to the history (e.g. test accuracy).
    Returns:
        the final :class:`TrainState` (history and push records).
    """
    runtime = model_runtime(model, runtime)
    source = as_source(feats, labels, cams, runtime.device)
    if cfg.beta_align > 0 and not source.has_cams:
        raise ValueError("attention alignment (beta_align > 0) needs the base model's Grad-CAM maps")
    model.to(runtime.device)
    seed_everything(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    warm_opt = warm_optimiser(model, cfg.lr_words, cfg.weight_decay)
    joint_opt = joint_optimiser(model, cfg.lr_tail, cfg.lr_words, cfg.weight_decay)
    last_opt = torch.optim.Adam(model.last_layer.parameters(), lr=cfg.lr_last)
    state = TrainState()
    if checkpoint is not None and Path(checkpoint).exists():
        state = _resume(checkpoint, cfg, model, [warm_opt, joint_opt, last_opt], generator)

    total = cfg.warm_epochs + cfg.joint_epochs
    bar = tqdm(total=total, initial=state.epochs_done, desc="LVW training", disable=not progress)
    while state.epochs_done < total:
        epoch = state.epochs_done + 1
        warm = epoch <= cfg.warm_epochs
        joint_epoch = epoch - cfg.warm_epochs
        if not warm:
            lr_tail, lr_words = (joint_lr(lr, joint_epoch - 1, cfg) for lr in (cfg.lr_tail, cfg.lr_words))
            set_joint_lrs(joint_opt, lr_tail, lr_words)
        row = _train_epoch(model, source, cfg, warm_opt if warm else joint_opt, warm, generator, runtime)
        row.update(epoch=epoch, stage="warm" if warm else "joint")
        state.history.append(row)
        if not warm and push_due(joint_epoch, cfg):
            record = push_words(model, source, None, cfg.class_specific, progress=progress, runtime=runtime)
            state.pushes.append(record.as_rows())
            row = train_last_layer(model, source, None, cfg, last_opt, generator, runtime=runtime)
            row.update(epoch=epoch, stage="last_layer")
            if evaluate is not None:
                row.update(evaluate(model))
            state.history.append(row)
        state.epochs_done = epoch
        if checkpoint is not None and dist.is_main():  # rank 0 writes; every rank holds the same state
            _save(checkpoint, cfg, model, [warm_opt, joint_opt, last_opt], generator, state)
        bar.update(1)
        bar.set_postfix(loss=f"{state.history[-1].get('loss', 0.0):.3f}")
    bar.close()
    model.eval()
    return state


def joint_epoch(
    model: PrototypeNet,
    source: Any,
    cfg: LVWConfig,
    optimiser: torch.optim.Optimizer,
    generator: torch.Generator,
    runtime: Runtime = CPU,
) -> dict[str, float]:
    """One joint epoch (tail, add-on and words; last layer fixed) over a batch source
    (:func:`lvwlib.core.batches.as_source`); returns the mean loss components and train accuracy.
    ProtoPShare's joint epochs between merge steps run it."""
    return _train_epoch(model, source, cfg, optimiser, False, generator, runtime)


def _train_epoch(
    model: PrototypeNet,
    source: Any,
    cfg: LVWConfig,
    optimiser: torch.optim.Optimizer,
    warm: bool,
    generator: torch.Generator,
    runtime: Runtime = CPU,
) -> dict[str, float]:
    """One pass of the warm-up or joint stage; returns mean loss components.

    ``source`` yields (batch, weight); under DDP the weight rescales this rank's
    mean loss so that the averaged gradient is the global batch's (see
    :func:`lvwlib.core.batches.shard`).
    """
    model.train()
    model.tail.requires_grad_(not warm)
    if warm:
        model.tail.eval()  # frozen tail: keep its batch-norm statistics fixed too
    model.last_layer.requires_grad_(False)
    net = dist.wrap(model)  # DDP over the parameters that train in this stage (itself in 1 process)
    scaler = runtime.grad_scaler()
    sums: dict[str, float] = {}
    count = 0
    for batch, weight in source.train_batches(cfg.batch_size, generator, with_cams=cfg.beta_align > 0):
        with runtime.autocast():
            out = net(batch.x)
            parts = prototype_losses(model, out, batch.y, batch.cam, cfg)
        loss = parts["loss"] if weight == 1.0 else parts["loss"] * weight
        backward_step(loss, optimiser, scaler)
        n = len(batch.y) if weight > 0 else 0
        for name, value in parts.items():
            sums[name] = sums.get(name, 0.0) + value.item() * n
        sums["train_acc"] = sums.get("train_acc", 0.0) + (out.logits.argmax(1) == batch.y).sum().item() * (n > 0)
        count += n
    model.tail.requires_grad_(True)
    model.last_layer.requires_grad_(True)
    sums, count = dist.sum_stats(sums, count)
    return {name: value / count for name, value in sums.items()}


def prototype_losses(
    model: PrototypeNet, out: Any, labels: torch.Tensor, cams: torch.Tensor | None, cfg: LVWConfig
) -> dict[str, torch.Tensor]:
    """The warm-up / joint objective of one batch: CE + alpha * cluster (+ separation, + beta * align).

    Args:
        out: the model's :class:`lvwlib.core.model.PrototypeOutput` of B images.
        labels: [B]; cams: [B, hc, wc] Grad-CAM of the same images and orientations.
    Returns:
        each component (scalars) and their weighted sum under ``loss``.
    """
    parts = {
        "ce": F.cross_entropy(out.logits, labels),
        "cluster": cluster_loss(
            out.min_distances,
            model.word_classes if cfg.class_specific else None,
            labels if cfg.class_specific else None,
        ),
    }
    loss = parts["ce"] + cfg.alpha_cluster * parts["cluster"]
    if cfg.separation != 0:
        parts["separation"] = separation_loss(out.min_distances, model.word_classes, labels)
        loss = loss + cfg.separation * parts["separation"]
    if cfg.beta_align > 0:
        parts["align"] = alignment_loss(
            log_similarity(out.distances), -out.min_distances, cams, cfg.topk_align, cfg.align_size,
        )
        loss = loss + cfg.beta_align * parts["align"]
    parts["loss"] = loss
    return parts


def train_last_layer(
    model: PrototypeNet,
    feats: Any,
    labels: torch.Tensor | None,
    cfg: LVWConfig,
    optimiser: torch.optim.Optimizer,
    generator: torch.Generator,
    batch_size: int | None = None,
    runtime: Runtime | None = None,
) -> dict[str, float]:
    """Last-layer stage: ``cfg.last_layer_epochs`` passes of CE + gamma * L1 on the last layer.

    Everything before the last layer is fixed, so the word scores of every
    image and flip are computed once ([N, 2, M]) and the passes run on them.
    ProtoPNet (class_specific) penalises only connections to other classes.
    Under DDP the scores of all ranks are gathered and every rank runs the same
    passes on all of them (the stage is a linear layer on [N, 2, M] numbers:
    replicating it is cheaper than synchronising it, and exact).
    """
    runtime = model_runtime(model, runtime)
    source = as_source(feats, labels, device=runtime.device)
    scores, labels = word_scores(model, source, runtime=runtime, with_labels=True)  # [N, 2, M], [N]
    model.to(runtime.device)
    mask = None
    if cfg.class_specific:
        mask = 1.0 - model.word_classes.T  # [C, M]: 1 on connections to other classes
    loss_value, acc = 0.0, 0.0
    for _ in range(cfg.last_layer_epochs):
        count, loss_sum, correct = 0, 0.0, 0
        for batch in iterate_batches(
            scores[:, :, :, None, None], labels, batch_size or cfg.batch_size,
            shuffle=True, random_flip=True, generator=generator, device=runtime.device,
        ):
            logits = model.last_layer(batch.x.flatten(1))
            loss = F.cross_entropy(logits, batch.y) + cfg.gamma_l1 * l1_last_layer(
                model.last_layer.weight, mask
            )
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            loss_sum += loss.item() * len(batch.y)
            correct += (logits.argmax(1) == batch.y).sum().item()
            count += len(batch.y)
        loss_value, acc = loss_sum / count, correct / count
    return {"loss": loss_value, "train_acc": acc}


def word_scores(
    model: PrototypeNet,
    feats: Any,
    batch_size: int = 256,
    runtime: Runtime | None = None,
    with_labels: bool = False,
) -> Any:
    """Word scores of every image in both orientations: [N, 2, M] on the CPU.

    ``feats`` is [N, 2, Ct, h, w] or a source; under DDP every rank gets all N
    rows (gathered). With ``with_labels``, also the labels [N].
    """
    runtime = model_runtime(model, runtime)
    source = as_source(feats, None, device=runtime.device)
    model.to(runtime.device)
    out, index = [], []
    with evaluation(model, runtime):
        for batch in source.ordered_batches(batch_size, flips=(0, 1)):
            b = len(batch.index)
            out.append(model.scores(batch.x).float().view(b, 2, -1).cpu())
            index.append(batch.index)
    scores = dist.gather_rows(torch.cat(out), torch.cat(index), len(source))
    return (scores, source.labels) if with_labels else scores


def _save(path, cfg, model, optimisers, generator, state: TrainState) -> None:
    payload = {
        "config": to_dict(cfg),
        "model": model.state_dict(),
        "optimisers": [opt.state_dict() for opt in optimisers],
        "generator": generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "state": state,
    }
    save_with(path, lambda tmp: torch.save(payload, tmp))


def _resume(path, cfg, model, optimisers, generator) -> TrainState:
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if payload["config"] != to_dict(cfg):
        raise StaleCacheError(f"checkpoint {path} was written by another config; delete it to retrain")
    model.load_state_dict(payload["model"])
    for opt, opt_state in zip(optimisers, payload["optimisers"], strict=True):
        opt.load_state_dict(opt_state)
    generator.set_state(payload["generator"])
    torch.set_rng_state(payload["torch_rng"])
    return payload["state"]


def load_record_rows(state: TrainState) -> PushRecord | None:
    """The last push of a run as a :class:`PushRecord`, or None before any push."""
    if not state.pushes:
        return None
    rows = state.pushes[-1]
    return PushRecord(
        image=torch.tensor([r["image"] for r in rows]),
        row=torch.tensor([r["row"] for r in rows]),
        col=torch.tensor([r["col"] for r in rows]),
        distance=torch.tensor([r["distance"] for r in rows]),
    )
