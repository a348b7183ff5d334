"""Several processes (GPUs) under ``torchrun``: PyTorch DDP and the collective steps of LVW.

Every helper here is the identity in a single process (``torch.distributed``
not initialised), so the training code calls them unconditionally and a
1-process run does exactly what it did before.

What is distributed and how:

- training batches: every rank draws the same epoch plan (order and flips, same
  seed) and takes its share of each *global* batch
  (:func:`lvwlib.core.batches.shard`), so the global batches are those of one
  process and DDP's averaged gradient is the global batch's gradient;
- gradients: :func:`wrap` puts the parameters that train in the current stage
  under ``DistributedDataParallel`` (a new wrapper per stage, because the
  trainable set changes between warm-up and joint epochs);
- push: each rank scans its images, then :func:`reduce_push` all-reduces the
  per-word minima and the winning rank's patch is broadcast;
- the last-layer stage: word scores are gathered (:func:`gather_rows`) and
  every rank runs the same passes (they are tiny);
- only rank 0 writes results and checkpoints (:func:`is_main`).
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as tdist
from torch import nn


def active() -> bool:
    """True inside an initialised process group of more than one process."""
    return tdist.is_available() and tdist.is_initialized() and tdist.get_world_size() > 1


def rank() -> int:
    return tdist.get_rank() if active() else 0


def world_size() -> int:
    return tdist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0 (or the only process): the one that writes files."""
    return rank() == 0


def barrier() -> None:
    if active():
        tdist.barrier()


def init_from_env(device: torch.device) -> tuple[int, int]:
    """Join the process group ``torchrun`` describes (RANK, WORLD_SIZE, MASTER_ADDR...).

    The backend is NCCL on CUDA and gloo on the CPU; on CUDA each rank takes
    the GPU ``LOCAL_RANK``. Returns (rank, world size); (0, 1) outside torchrun.
    """
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return 0, 1
    if not tdist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        tdist.init_process_group(backend=backend, timeout=timedelta(minutes=30))
    return tdist.get_rank(), tdist.get_world_size()


def local_device(device: torch.device) -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` on CUDA, else ``device``."""
    if device.type == "cuda" and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return device


def shutdown() -> None:
    if tdist.is_available() and tdist.is_initialized():
        tdist.destroy_process_group()


def _comm_device() -> torch.device:
    """NCCL reduces CUDA tensors only; gloo CPU tensors."""
    if tdist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _all_reduce(tensor: torch.Tensor, op: tdist.ReduceOp = tdist.ReduceOp.SUM) -> torch.Tensor:
    """All-reduce on the backend's device; returns a tensor on ``tensor``'s device."""
    moved = tensor.to(_comm_device())
    tdist.all_reduce(moved, op=op)
    return moved.to(tensor.device)


def wrap(model: nn.Module) -> nn.Module:
    """``model`` under DDP over its parameters that currently require grad (itself in 1 process).

    Batch norm normalises each rank's share with its own batch statistics (the
    usual DDP behaviour, not SyncBatchNorm) and DDP copies rank 0's running
    statistics to the others at each forward pass.
    """
    if not active():
        return model
    device = next(model.parameters()).device
    device_ids = [device] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def sum_stats(sums: dict[str, float], count: int) -> tuple[dict[str, float], int]:
    """Sum per-rank loss sums and image counts over ranks (for the history)."""
    if not active():
        return sums, count
    names = sorted(sums)
    values = _all_reduce(torch.tensor([sums[n] for n in names] + [float(count)], dtype=torch.float64))
    return {n: float(values[i]) for i, n in enumerate(names)}, int(values[-1])


def agree_int(value: int | None) -> int:
    """An int that some ranks know (e.g. the latent width), made known to all."""
    if not active():
        if value is None:
            raise ValueError("no value: the rank saw no data")
        return value
    t = _all_reduce(torch.tensor([-1 if value is None else value], dtype=torch.long), tdist.ReduceOp.MAX)
    return int(t)


def gather_rows(rows: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    """Rows [n_local, ...] of global positions ``index`` [n_local] -> all rows [n, ...] on every rank."""
    if not active():
        return rows
    full = torch.zeros(n, *rows.shape[1:], dtype=rows.dtype)
    full[index] = rows
    return _all_reduce(full)  # each row is non-zero on exactly one rank: the sum is a gather


def sum_rows(full: torch.Tensor) -> torch.Tensor:
    """A tensor [N, ...] whose rows each rank filled for its own images (zeros elsewhere) -> complete."""
    return _all_reduce(full) if active() else full


def broadcast_flag(flag: bool) -> bool:
    """Rank 0's value of ``flag`` on every rank (e.g. "this cache entry exists")."""
    if not active():
        return flag
    t = torch.tensor([int(flag)], device=_comm_device())
    tdist.broadcast(t, src=0)
    return bool(t.item())


def reduce_push(
    best_dist: torch.Tensor, best_image: torch.Tensor, best_pos: torch.Tensor, best_vec: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Combine the ranks' push candidates: every word's nearest patch over all ranks.

    Args:
        best_dist: [M] this rank's smallest distance per word (inf: none allowed here).
        best_image: [M] global index of that image (-1: none).
        best_pos: [M] flat patch position; best_vec: [M, D] the patch.
    Returns:
        the same four, identical on every rank: the all-reduced minimum distance;
        among ranks reaching it, the lowest image index wins (a 1-process scan keeps
        the first image too), and that rank's patch is broadcast (a sum in which
        every other rank contributes zeros).
    """
    if not active():
        return best_dist, best_image, best_pos, best_vec
    global_dist = _all_reduce(best_dist.clone(), tdist.ReduceOp.MIN)
    big = torch.iinfo(torch.long).max
    mine = (best_dist == global_dist) & (best_image >= 0)
    candidate = torch.where(mine, best_image, torch.full_like(best_image, big))
    winner = _all_reduce(candidate.clone(), tdist.ReduceOp.MIN)
    won = mine & (best_image == winner)  # [M]: this rank holds the winning patch
    vec = torch.where(won[:, None], best_vec, torch.zeros_like(best_vec))
    pos = torch.where(won, best_pos, torch.zeros_like(best_pos))
    vec, pos = _all_reduce(vec), _all_reduce(pos)
    image = torch.where(winner == big, torch.full_like(winner, -1), winner)
    return global_dist, image, pos, vec
