"""The base model's training and its Grad-CAM attention (method.md section 4)."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn
from tqdm.auto import tqdm

from lvwlib.base_model import BaseModel
from lvwlib.batches import iterate_batches
from lvwlib.config import BaseConfig
from lvwlib.seeding import seed_everything


def train_base_model(
    tail: nn.Module,
    feature_channels: int,
    num_classes: int,
    feats: torch.Tensor,
    labels: torch.Tensor,
    cfg: BaseConfig,
    progress: bool = True,
) -> tuple[BaseModel, list[dict[str, float]]]:
    """Fine-tune a copy of ``tail`` and a linear classifier on cached trunk features.

    Args:
        tail: trainable part of the backbone (deep-copied, the argument is untouched).
        feats: [N, 2, Ct, h, w] cached trunk features (original, flipped).
        labels: [N].
    Returns:
        the trained model (eval mode) and per-epoch history (loss, train accuracy).
    """
    seed_everything(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    model = BaseModel(copy.deepcopy(tail), feature_channels, num_classes)
    optimiser = torch.optim.Adam(
        [
            {"params": model.tail.parameters(), "lr": cfg.lr_tail},
            {"params": model.classifier.parameters(), "lr": cfg.lr_head},
        ]
    )
    history = []
    for epoch in tqdm(range(cfg.epochs), desc="base model", disable=not progress):
        model.train()
        total, correct, loss_sum = 0, 0, 0.0
        for batch in iterate_batches(
            feats, labels, cfg.batch_size, shuffle=True, random_flip=True, generator=generator
        ):
            logits = model(batch.x)
            loss = F.cross_entropy(logits, batch.y)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            loss_sum += loss.item() * len(batch.y)
            correct += (logits.argmax(1) == batch.y).sum().item()
            total += len(batch.y)
        history.append({"epoch": epoch + 1, "loss": loss_sum / total, "train_acc": correct / total})
    model.eval()
    return model, history


@torch.no_grad()
def predict(model: nn.Module, feats: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Logits [N, C] of the unflipped images of ``feats`` [N, 2, Ct, h, w] (or [N, Ct, h, w])."""
    model.eval()
    x_all = feats[:, 0] if feats.dim() == 5 else feats
    out = [model(x_all[i : i + batch_size].float()) for i in range(0, len(x_all), batch_size)]
    return torch.cat(out)


def gradcam_maps(
    model: BaseModel,
    feats: torch.Tensor,
    labels: torch.Tensor | None = None,
    target: str = "predicted",
    batch_size: int = 64,
    progress: bool = True,
) -> torch.Tensor:
    """Grad-CAM of the base model at its last convolutional layer (the tail output).

    Args:
        model: trained base model.
        feats: [N, 2, Ct, h, w] trunk features of images and their flips.
        labels: [N], required when ``target == "label"``.
        target: "predicted" (pytorch-grad-cam's default: each image's own predicted
            class, so a flip may target another class) or "label".
    Returns:
        [N, 2, h, w] float32 maps, ReLU'd and min-max scaled to [0, 1] per image,
        at the feature-map resolution; upsample with :func:`lvwlib.losses.upsample_cam`.
    """
    if target not in ("predicted", "label"):
        raise ValueError(f"cam_target must be 'predicted' or 'label', got {target!r}")
    if target == "label" and labels is None:
        raise ValueError("cam_target 'label' needs the labels")
    n = feats.shape[0]
    out = torch.empty(n, 2, *feats.shape[-2:], dtype=torch.float32)
    # The hooks live only inside the with-block, so the model is clean afterwards.
    with GradCAM(model=model, target_layers=[model.tail]) as cam:
        for flip in (0, 1):
            for start in tqdm(
                range(0, n, batch_size), desc=f"Grad-CAM ({'flip' if flip else 'orig'})",
                disable=not progress, leave=False,
            ):
                # requires_grad so the hook sees gradients even when the tail has no weights
                x = feats[start : start + batch_size, flip].float().requires_grad_(True)
                targets = None
                if target == "label":
                    targets = [ClassifierOutputTarget(int(c)) for c in labels[start : start + batch_size]]
                out[start : start + len(x), flip] = torch.from_numpy(cam(input_tensor=x, targets=targets))
    return out
