"""The base model's training and its Grad-CAM attention (method.md section 4)."""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from lvwlib.core import distributed as dist
from lvwlib.core.base_model import BaseModel
from lvwlib.core.batches import as_source
from lvwlib.core.config import BaseConfig
from lvwlib.core.devices import Runtime, backward_step, evaluation, model_runtime
from lvwlib.core.seeding import seed_everything


def train_base_model(
    tail: nn.Module,
    feature_channels: int,
    num_classes: int,
    feats: Any,
    labels: torch.Tensor | None,
    cfg: BaseConfig,
    progress: bool = True,
    runtime: Runtime | None = None,
) -> tuple[BaseModel, list[dict[str, float]]]:
    """Fine-tune a copy of ``tail`` and a linear classifier on cached trunk features.

    Args:
        tail: trainable part of the backbone (deep-copied, the argument is untouched).
        feats: [N, 2, Ct, h, w] cached trunk features (original, flipped), or a
            batch source (then ``labels`` is ignored).
        labels: [N].
        runtime: device and autocast mode.
    Returns:
        the trained model (eval mode, on the runtime's device) and per-epoch
        history (loss, train accuracy).
    """
    runtime = model_runtime(tail, runtime)
    source = as_source(feats, labels, device=runtime.device)
    seed_everything(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    model = BaseModel(copy.deepcopy(tail), feature_channels, num_classes).to(runtime.device)
    scaler = runtime.grad_scaler()
    optimiser = torch.optim.Adam(
        [
            {"params": model.tail.parameters(), "lr": cfg.lr_tail},
            {"params": model.classifier.parameters(), "lr": cfg.lr_head},
        ]
    )
    history = []
    for epoch in tqdm(range(cfg.epochs), desc="base model", disable=not progress):
        model.train()
        net = dist.wrap(model)
        total, correct, loss_sum = 0, 0, 0.0
        for batch, weight in source.train_batches(cfg.batch_size, generator, with_cams=False):
            with runtime.autocast():
                logits = net(batch.x)
                loss = F.cross_entropy(logits, batch.y)
            backward_step(loss if weight == 1.0 else loss * weight, optimiser, scaler)
            n = len(batch.y) if weight > 0 else 0
            loss_sum += loss.item() * n
            correct += (logits.argmax(1) == batch.y).sum().item() * (n > 0)
            total += n
        sums, total = dist.sum_stats({"loss": loss_sum, "correct": float(correct)}, total)
        history.append({"epoch": epoch + 1, "loss": sums["loss"] / total, "train_acc": sums["correct"] / total})
    model.eval()
    return model, history


@torch.no_grad()
def predict(model: nn.Module, feats: torch.Tensor, batch_size: int = 256, runtime: Runtime | None = None) -> torch.Tensor:
    """Logits [N, C] (CPU) of the unflipped images of ``feats`` [N, 2, Ct, h, w] (or [N, Ct, h, w])."""
    runtime = model_runtime(model, runtime)
    x_all = feats[:, 0] if feats.dim() == 5 else feats
    model.to(runtime.device)
    with evaluation(model, runtime):
        out = [model(x_all[i : i + batch_size].float().to(runtime.device)).float().cpu()
               for i in range(0, len(x_all), batch_size)]
    return torch.cat(out)


def gradcam_maps(
    model: BaseModel,
    feats: Any,
    labels: torch.Tensor | None = None,
    target: str = "predicted",
    batch_size: int = 64,
    progress: bool = True,
    runtime: Runtime | None = None,
    at_layer_resolution: bool = False,
) -> torch.Tensor:
    """Grad-CAM of the base model at its last convolutional layer (the tail output).

    Args:
        model: trained base model.
        feats: [N, 2, Ct, h, w] trunk features of images and their flips, or a
            batch source (1 process; its labels serve ``target == "label"``).
        labels: [N], required when ``target == "label"`` with a feature tensor.
        target: "predicted" (pytorch-grad-cam's default: each image's own predicted
            class, so a flip may target another class) or "label".
        at_layer_resolution: keep the maps at the tail output's h x w instead of
            pytorch-grad-cam's resize to the input's (for image inputs, ``tail: all``:
            7 x 7 instead of 224 x 224 numbers per map, what the cache stores).
    Returns:
        [N, 2, h, w] float32 maps, ReLU'd and min-max scaled to [0, 1] per image,
        at the feature-map resolution; upsample with :func:`lvwlib.core.losses.upsample_cam`.
    """
    if target not in ("predicted", "label"):
        raise ValueError(f"cam_target must be 'predicted' or 'label', got {target!r}")
    if target == "label" and labels is None and isinstance(feats, torch.Tensor):
        raise ValueError("cam_target 'label' needs the labels")
    runtime = model_runtime(model, runtime)
    source = as_source(feats, labels, device=runtime.device)
    model.to(runtime.device)
    n = len(source)
    out: torch.Tensor | None = None
    # The hooks live only inside the with-block, so the model is clean afterwards.
    # Grad-CAM runs in float32 (no autocast): its maps are cached and reused every epoch.
    # pytorch-grad-cam is imported here, not with the module: it pulls in torchvision, scikit-learn
    # and OpenCV (~2.5 s), which every process importing lvwlib (pool workers, notebook kernels)
    # would otherwise pay even when it never computes a map.
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam_class = _layer_resolution_gradcam(GradCAM) if at_layer_resolution else GradCAM
    with cam_class(model=model, target_layers=[model.tail]) as cam:
        for flip in (0, 1):
            for batch in tqdm(
                source.ordered_batches(batch_size, flips=(flip,)), desc=f"Grad-CAM ({'flip' if flip else 'orig'})",
                disable=not progress, leave=False,
            ):
                # requires_grad so the hook sees gradients even when the tail has no weights
                x = batch.x.requires_grad_(True)
                targets = None
                if target == "label":
                    targets = [ClassifierOutputTarget(int(c)) for c in batch.y]
                maps = torch.from_numpy(cam(input_tensor=x, targets=targets))  # [B, h, w]
                if out is None:
                    out = torch.zeros(n, 2, *maps.shape[-2:], dtype=torch.float32)
                out[batch.index, flip] = maps
    if out is None:
        raise ValueError("Grad-CAM of an empty set (or of a rank without images)")
    return dist.sum_rows(out)  # under DDP each rank filled its own images' rows


def _layer_resolution_gradcam(grad_cam: type) -> type:
    """pytorch-grad-cam's GradCAM class, changed to keep the target layer's resolution (no resize to
    the input size); built on call because the library is imported lazily."""

    class LayerResolutionGradCAM(grad_cam):
        def get_target_width_height(self, input_tensor: torch.Tensor) -> None:
            return None

    return LayerResolutionGradCAM
