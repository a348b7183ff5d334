"""SRAE baseline: the Sparse Reconstruction Autoencoder explanation module.

Qi, Khorram, Li, "Embedding Deep Networks into Visual Explanations" (equation
numbers below are that paper's).

Where the module is attached
----------------------------
``Z`` is the base model's pooled penultimate layer, ``Z = GAP(tail(trunk))``
[B, Cf], i.e. the input of its linear classifier. The paper attaches the
module to fully connected layers (Sec. 2.1; VGG fc6 in Sec. 4.2); our base
model has one fully connected layer and ``Z`` is its input. ``Z`` is the
global average of the tail's last conv map ``A`` [B, Cf, h, w], so every
x-feature is a differentiable function of ``A`` and Grad-CAM at ``A`` is
well defined. The tail is frozen, so ``Z`` and the base logits of both
orientations of every image are computed once and the SRAE trains on them.

Multi-class
-----------
The paper explains one 1-dimensional output at a time (Sec. 2.1): one SRAE
per category, one-against-all, its target the category's pre-softmax logit
``y_hat_j`` (Eq. 1), with the positive examples up-weighted (Sec. 4.2). This
is what ``per_class=True`` (default) does: ``G = C`` independent modules,
stored as grouped (batched) weights and trained in parallel. They share no
parameter and Adam is element-wise, so training them on the sum of their
losses is training each on its own (on the same mini-batches).
``per_class=False`` is a cheaper variant that is NOT the paper's: one module
whose n x-features feed a linear predictor of all C logits.

Architecture and objective
--------------------------
Encoder ``E_theta``: Z -> 800 -> 100 -> n (Sec. 4.2: "3-middle-layer SRAE
with 800 - 100 - n hidden units"); the decoder ``E^-1_theta~`` mirrors it
(n -> 100 -> 800 -> Cf); predictor ``y_bar = v^T E`` (linear, no bias, Eq. 1
and 5). Objective (Eq. 5), per module::

    mean_i ||v^T E(Z_i) - y_hat_i||^2                       (faithfulness)
    + beta * 1/S_z sum_k log(1 + q Q_k)                      (Eq. 4, sparse reconstruction)
    + eta * 1/(n(n-1)) sum_{l != l'} cos(E_l, E_l')^2        (Eq. 3, pull-away)
    + lambda_1 ||theta||^2 + lambda_2 ||theta~||^2 + lambda_3 ||v||^2

Choices where the paper is silent (all in :class:`SRAEConfig`):

- hidden activations ReLU, decoder output linear, x-layer linear
  (``x_activation="identity"``). A ReLU x-layer (option ``"relu"``) lets
  x-features die: a dead x-feature has no gradient, and Eq. 3 even rewards
  an all-zero one (it is orthogonal to everything). On a synthetic check
  (4 classes, n = 5, 3 seeds) ReLU left 5-10 of 20 x-features dead and
  whole one-vs-all modules unable to fit their logit (F_reg ~1.0 against
  ~0.06 with the linear x-layer, same settings);
- L2 on weight matrices and ``v`` only (Eq. 5 says "weights"), not biases;
- ``q = 10`` (one of the two values of Fig. 3), ``beta = eta = 1``,
  ``lambda = 1e-5``; the paper tuned them by cross-validation without
  reporting values;
- positives of class j get weight ``N_neg / N_pos`` in the faithfulness
  and reconstruction averages of module j (balanced; the paper only says it
  "enhances" them); weights are rescaled to mean 1 over the data set so a
  mini-batch average is an unbiased estimate of the weighted data-set average;
- Eq. 3 and Q_k of Eq. 4 are data-set statistics; they are estimated on each
  mini-batch;
- Adam, lr 1e-3, batch 64, 30 epochs, a random flip per image and epoch.

Cost: per-class modules with Cf = 1280 and 800-100-n widths hold ~2.2M
parameters per class (22M for 10 classes, ~440M for 200). A step of 64
images took ~0.7 s for 10 classes on one CPU thread (~14 s for 200): use a
GPU, or smaller ``hidden`` / ``per_class=False`` for quick runs.

Explanation maps (for the IoU coverage of the LVW paper)
--------------------------------------------------------
The paper visualises x-features with ExcitationBP; following the project's
method (Sec. 5) we use Grad-CAM of the x-features at the tail output ``A``:
for each x-feature i of the module explaining the target (default: the
base model's predicted) class c, ``cam_i = ReLU(sum_k alpha_ik A_k)`` with
``alpha_ik = mean_{h,w} d s_i / d A_k`` and ``s_i = sign(v_ci) x_i`` (the
direction in which x-feature i raises the class logit; equal to ``x_i`` when
``v_ci > 0``, e.g. for every positive contribution of a non-negative
x-layer), and the map is ``sum_i ReLU(v_ci x_i) cam_i``: each x-feature's map weighted by its
positive contribution ``v_i E_i`` to the class logit (Fig. 4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from lvwlib.core.base_model import BaseModel
from lvwlib.core.batches import iterate_batches

_X_ACTIVATIONS = ("relu", "softplus", "identity")


@dataclass(frozen=True)
class SRAEConfig:
    """Hyper-parameters of :func:`train_srae` (paper defaults where it gives them)."""

    n_xfeatures: int = 5  # n: x-features per explained logit (paper Sec. 4.2: n = 5 for CUB and Places)
    hidden: tuple[int, ...] = (800, 100)  # encoder widths Z -> 800 -> 100 -> n (paper); decoder mirrors them
    per_class: bool = True  # one SRAE per class explaining its logit one-vs-all (paper); False: one shared module for all logits
    x_activation: str = "identity"  # x-layer activation: identity | relu | softplus (paper silent)
    faithfulness: float = 1.0  # coefficient of the squared faithfulness term (1 in Eq. 5)
    beta: float = 1.0  # beta: coefficient of the log-penalty sparse reconstruction (Eq. 4-5; value not reported)
    q: float = 10.0  # q: sparsity parameter of log(1 + q * Q_k) (Eq. 4; Fig. 3 shows q = 1 and 10)
    eta: float = 1.0  # eta: coefficient of the pull-away orthogonality term (Eq. 3, 5; value not reported)
    lambda_encoder: float = 1e-5  # lambda_1: L2 on the encoder weights theta (Eq. 5)
    lambda_decoder: float = 1e-5  # lambda_2: L2 on the decoder weights theta~ (Eq. 5)
    lambda_predictor: float = 1e-5  # lambda_3: L2 on the predictor weights v (Eq. 5)
    predictor_bias: bool = False  # add a bias to y_bar = v^T E (paper: no bias)
    balance_positives: bool = True  # per-class: weight positives by N_neg / N_pos (paper up-weights positives)
    epochs: int = 30  # passes over the cached features (paper silent)
    lr: float = 1e-3  # Adam learning rate (paper silent)
    batch_size: int = 64  # images per step; Eq. 3 and Q_k are estimated on each batch
    seed: int = 0  # seed of initialisation (seed) and of data order / flips (seed + 1)

    def __post_init__(self) -> None:
        if self.x_activation not in _X_ACTIVATIONS:
            raise ValueError(f"x_activation must be one of {_X_ACTIVATIONS}, got {self.x_activation!r}")
        if self.n_xfeatures < 1:
            raise ValueError("n_xfeatures must be >= 1")


# --------------------------------------------------------------------------- losses


def faithfulness_loss(
    y_bar: torch.Tensor, y_hat: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Faithfulness term of Eq. 5: ``1/M sum_i w_i ||y_bar_i - y_hat_i||^2``.

    Args:
        y_bar: [M, ..., K] the SRAE predictions ``v^T E(Z_i)``.
        y_hat: [M, ..., K] the base model's logits being explained.
        weights: optional [M, ...] per-sample weights (mean 1 over the data set).

    Returns:
        [...] one value per module (a scalar for 2-D inputs).
    """
    err = (y_bar - y_hat).pow(2).sum(-1)  # [M, ...]
    if weights is not None:
        err = err * weights
    return err.mean(0)


def sparse_reconstruction_loss(
    recon: torch.Tensor,
    target: torch.Tensor,
    q: float,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Log-penalty sparse reconstruction, Eq. 4: ``1/S_z sum_k log(1 + q Q_k)``.

    ``Q_k = 1/M sum_i w_i (recon_ik - Z_ik)^2`` is the mean squared
    reconstruction error of dimension k over the samples (dim 0).

    Args:
        recon: [M, ..., S_z] reconstructions ``E^-1(E(Z_i))``.
        target: [M, ..., S_z] the features Z_i (broadcastable to ``recon``).
        q: the sparsity parameter q > 0.
        weights: optional [M, ...] per-sample weights (mean 1 over the data set).

    Returns:
        [...] one value per module (a scalar for 2-D inputs).
    """
    err = (recon - target).pow(2)  # [M, ..., S_z]
    if weights is not None:
        err = err * weights.unsqueeze(-1)
    big_q = err.mean(0)  # [..., S_z]
    return torch.log1p(q * big_q).mean(-1)


def pull_away_loss(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pull-away term, Eq. 3: ``1/(n(n-1)) sum_l sum_{l' != l} cos(E_l, E_l')^2``.

    ``E_l`` is the vector of x-feature l over the M samples (dim 0) and cos
    the cosine ``E_l^T E_l' / (||E_l|| ||E_l'||)`` (not centred). An all-zero
    ``E_l`` counts as orthogonal to everything. 0 when n = 1.

    Args:
        x: [M, ..., n] x-features.

    Returns:
        [...] one value per module (a scalar for 2-D inputs).
    """
    n = x.shape[-1]
    if n < 2:
        return x.new_zeros(x.shape[1:-1])
    unit = x / x.norm(dim=0, keepdim=True).clamp_min(eps)  # columns E_l / ||E_l||
    cos = torch.einsum("m...l,m...k->...lk", unit, unit)  # [..., n, n]
    off = cos.pow(2).sum((-1, -2)) - torch.diagonal(cos, dim1=-2, dim2=-1).pow(2).sum(-1)
    return off / (n * (n - 1))


def l2_penalty(params: list[torch.Tensor]) -> torch.Tensor:
    """``sum ||W||^2`` over the given weight tensors (Eq. 5's L2 terms, unscaled)."""
    return sum((p.pow(2).sum() for p in params), torch.zeros((), device=params[0].device))


@torch.no_grad()
def l2_value(params: list[torch.Tensor]) -> float:
    """:func:`l2_penalty` as a number, without a graph (one read of the weights: for the loss history)."""
    return float(sum(n.double() ** 2 for n in torch._foreach_norm(params)))


# --------------------------------------------------------------------------- module


class _GroupedLinear(nn.Module):
    """G independent linear layers: weight [G, d_in, d_out] (``shared_input``: [d_in, G, d_out]), bias [G, d_out].

    ``shared_input``: every group reads the same input [B, d_in] (the encoder's first layer, on Z).
    Its weight is stored [d_in, G, d_out], so all groups are one [B, d_in] @ [d_in, G * d_out]
    product with no copy: stored [G, d_in, d_out], the einsum copied the whole weight (Cf x G x
    800 or 256 values) into that order on every forward and its gradient back on every backward,
    ~40 % of an SRAE step at 102 classes (issue 17). Same values either way: the initial weights
    are drawn [G, d_in, d_out] and permuted.
    """

    def __init__(
        self, groups: int, d_in: int, d_out: int, generator: torch.Generator, shared_input: bool = False
    ) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(d_in)  # as nn.Linear's default initialisation
        weight = (torch.rand(groups, d_in, d_out, generator=generator) * 2 - 1) * bound
        self.shared_input = shared_input
        self.weight = nn.Parameter(weight.permute(1, 0, 2).contiguous() if shared_input else weight)
        self.bias = nn.Parameter((torch.rand(groups, d_out, generator=generator) * 2 - 1) * bound)

    def group_weight(self, group: int) -> torch.Tensor:
        """Group ``group``'s weight [d_in, d_out] (a view)."""
        return self.weight[:, group] if self.shared_input else self.weight[group]

    def forward(self, h: torch.Tensor, group: int | None = None) -> torch.Tensor:
        """All groups: [B, d_in] (shared input) or [B, G, d_in] -> [B, G, d_out].
        One group g: [B, d_in] -> [B, d_out]."""
        if group is not None:
            return h @ self.group_weight(group) + self.bias[group]
        if self.shared_input:
            if h.dim() != 2:
                raise ValueError(f"a shared-input layer takes [B, d_in], got {tuple(h.shape)}")
            return (h @ self.weight.flatten(1)).view(h.shape[0], *self.bias.shape) + self.bias
        if h.dim() == 2:
            return torch.einsum("bi,gio->bgo", h, self.weight) + self.bias
        return torch.einsum("bgi,gio->bgo", h, self.weight) + self.bias


class SRAE(nn.Module):
    """G independent SRAE modules (encoder, decoder, linear predictor), batched.

    Args:
        in_dim: S_z = Cf, the dimension of Z.
        n: number of x-features per module.
        hidden: encoder hidden widths (decoder mirrors them).
        groups: G, number of modules (C per-class, 1 shared).
        outputs: K, outputs of each module's predictor (1 per-class, C shared).
        x_activation: relu | softplus | identity.
        predictor_bias: add a bias to ``v^T E``.
        generator: CPU generator of the initialisation.
    """

    def __init__(
        self,
        in_dim: int,
        n: int,
        hidden: tuple[int, ...],
        groups: int,
        outputs: int,
        x_activation: str = "identity",
        predictor_bias: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if generator is None:
            generator = torch.Generator().manual_seed(0)
        enc = [in_dim, *hidden, n]
        dec = [n, *reversed(hidden), in_dim]
        self.encoder = nn.ModuleList(
            _GroupedLinear(groups, a, b, generator, shared_input=i == 0)  # the first layer reads Z itself
            for i, (a, b) in enumerate(zip(enc[:-1], enc[1:], strict=True))
        )
        self.decoder = nn.ModuleList(
            _GroupedLinear(groups, a, b, generator) for a, b in zip(dec[:-1], dec[1:], strict=True)
        )
        bound = 1.0 / math.sqrt(n)
        self.v = nn.Parameter((torch.rand(groups, n, outputs, generator=generator) * 2 - 1) * bound)
        self.v_bias = nn.Parameter(torch.zeros(groups, outputs)) if predictor_bias else None
        self.groups, self.n, self.outputs = groups, n, outputs
        self.x_activation = x_activation

    def _act_x(self, h: torch.Tensor) -> torch.Tensor:
        if self.x_activation == "relu":
            return F.relu(h)
        if self.x_activation == "softplus":
            return F.softplus(h)
        return h

    def encode(self, z: torch.Tensor, group: int | None = None) -> torch.Tensor:
        """x-features: [B, S_z] -> [B, G, n] (all modules) or [B, n] (module ``group``)."""
        h = z
        last = len(self.encoder) - 1
        for i, layer in enumerate(self.encoder):
            h = layer(h, group)
            h = self._act_x(h) if i == last else F.relu(h)
        return h

    def decode(self, x: torch.Tensor, group: int | None = None) -> torch.Tensor:
        """Reconstruction of Z: [B, G, n] -> [B, G, S_z] or [B, n] -> [B, S_z] (module ``group``)."""
        h = x
        last = len(self.decoder) - 1
        for i, layer in enumerate(self.decoder):
            h = layer(h, group)
            if i != last:
                h = F.relu(h)
        return h

    def predict(self, x: torch.Tensor, group: int | None = None) -> torch.Tensor:
        """``y_bar = v^T E``: [B, G, n] -> [B, G, K] or [B, n] -> [B, K] (module ``group``)."""
        if group is not None:
            y = x @ self.v[group]
            return y + self.v_bias[group] if self.v_bias is not None else y
        y = torch.einsum("bgn,gnk->bgk", x, self.v)
        return y + self.v_bias if self.v_bias is not None else y

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """[B, S_z] -> (x [B, G, n], reconstruction [B, G, S_z], y_bar [B, G, K])."""
        x = self.encode(z)
        return x, self.decode(x), self.predict(x)

    def weight_groups(self) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        """(encoder weights theta, decoder weights theta~, predictor weights v), biases excluded."""
        return (
            [layer.weight for layer in self.encoder],
            [layer.weight for layer in self.decoder],
            [self.v],
        )


def grad_cam(acts: torch.Tensor, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Grad-CAM of several scalar scores per image at one conv layer, by autograd.

    ``alpha_ik = 1/(hw) sum_{u,v} d s_i / d A_k[u, v]`` and
    ``cam_i = ReLU(sum_k alpha_ik A_k)`` (Selvaraju et al.; the formula of
    pytorch-grad-cam's GradCAM before its resizing and min-max scaling).
    Images must be independent in the graph (eval mode).

    Args:
        acts: [B, Cf, h, w] activations, part of the graph of ``scores``.
        scores: [B, n] scores computed from ``acts``.

    Returns:
        (weights [B, n, Cf], cams [B, n, h, w]), both detached.
    """
    weights = []
    for i in range(scores.shape[1]):
        (g,) = torch.autograd.grad(scores[:, i].sum(), acts, retain_graph=True, allow_unused=True)
        if g is None:
            g = torch.zeros_like(acts)
        weights.append(g.mean((2, 3)))
    alpha = torch.stack(weights, 1).detach()  # [B, n, Cf]
    cams = F.relu(torch.einsum("bnc,bchw->bnhw", alpha, acts.detach()))
    return alpha, cams


class SRAEModel(nn.Module):
    """A trained SRAE explanation module attached to a frozen base model.

    Attributes:
        base: the base model (its ``pool`` output Z is the explained layer).
        srae: the :class:`SRAE` modules (G = C per-class, or 1 shared).
        config: the :class:`SRAEConfig` it was trained with.
        history: per-epoch mean loss terms of training.
    """

    def __init__(self, base: BaseModel, srae: SRAE, config: SRAEConfig) -> None:
        super().__init__()
        self.base = base
        self.srae = srae
        self.config = config
        self.history: list[dict[str, float]] = []

    @property
    def per_class(self) -> bool:
        return self.config.per_class

    @property
    def device(self) -> torch.device:
        return self.srae.v.device

    def approx_logits(self, z: torch.Tensor) -> torch.Tensor:
        """SRAE approximation ``y_bar`` of every base logit: Z [B, Cf] -> [B, C].

        Per-class: column j is module j's one-vs-all prediction of logit j.
        """
        y = self.srae(z)[2]  # [B, G, K]
        return y[:, :, 0] if self.per_class else y[:, 0, :]

    def x_features(self, z: torch.Tensor, classes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x-features of the module explaining each image's class, and its predictor weights.

        Args:
            z: [B, Cf] pooled features.
            classes: [B] long, the class explained for each image.

        Returns:
            (x [B, n] differentiable in z, v [B, n] the weights of x in y_bar_class).
        """
        if not self.per_class:
            return self.srae.encode(z, 0), self.srae.v[0, :, classes].T
        parts, order = [], []
        for c in torch.unique(classes).tolist():
            idx = (classes == c).nonzero().flatten()
            parts.append(self.srae.encode(z[idx], c))
            order.append(idx)
        x = torch.cat(parts)[torch.argsort(torch.cat(order))]
        return x, self.srae.v[classes, :, 0]

    def x_feature_cams(
        self, trunk: torch.Tensor, classes: torch.Tensor | None = None, signed: bool = True
    ) -> dict[str, torch.Tensor]:
        """Per-x-feature Grad-CAM maps at the tail output (puts base and SRAE in eval mode).

        Args:
            trunk: [B, Ct, h, w] trunk features (any float dtype, any device).
            classes: [B] classes to explain; None: the base model's predictions.
            signed: Grad-CAM of ``sign(v_ci) x_i`` (True) or of ``x_i`` (False);
                identical for x-features with a positive contribution.

        Returns:
            dict with ``logits`` [B, C] (base model), ``classes`` [B], ``x`` [B, n],
            ``contrib`` [B, n] = v_ci x_i, ``cams`` [B, n, h, w] (non-negative).
        """
        self.base.eval()
        self.srae.eval()
        trunk = trunk.to(self.device, torch.float32)
        with torch.no_grad():
            acts = self.base.features(trunk)
        acts = acts.detach().requires_grad_(True)
        with torch.enable_grad():
            z = self.base.pool(acts).flatten(1)
            logits = self.base.classifier(z)
            if classes is None:
                classes = logits.argmax(1)
            classes = classes.to(self.device)
            x, v = self.x_features(z, classes)
            scores = x * torch.sign(v).detach() if signed else x
            _, cams = grad_cam(acts, scores)
        return {
            "logits": logits.detach(),
            "classes": classes,
            "x": x.detach(),
            "contrib": (v * x).detach(),
            "cams": cams,
        }

    def explain(
        self, trunk: torch.Tensor, classes: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Contribution-weighted Grad-CAM of the x-features.

        ``map = sum_i ReLU(v_ci x_i) * cam_i`` for the explained class c
        (default: the base model's prediction). Works under ``torch.no_grad``
        (not under ``torch.inference_mode``).

        Args:
            trunk: [B, Ct, h, w] trunk features.
            classes: optional [B] classes to explain.

        Returns:
            (logits [B, C] of the base model, maps [B, 1, h, w] non-negative,
            at the feature-map resolution, not normalised; all-zero when no
            x-feature contributes positively).
        """
        out = self.x_feature_cams(trunk, classes, signed=True)
        w = F.relu(out["contrib"])[:, :, None, None]
        return out["logits"], (w * out["cams"]).sum(1, keepdim=True)


# --------------------------------------------------------------------------- training


def pooled_features(
    base_model: BaseModel, feats: torch.Tensor, batch_size: int = 128, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Explained layer and base logits of both orientations, computed once.

    Args:
        feats: [N, 2, Ct, h, w] cached trunk features.

    Returns:
        (Z [N, 2, Cf], logits [N, 2, C]) float32 on the CPU.
    """
    if device is None:
        device = next(base_model.parameters()).device
    zs, ys = [], []
    with torch.no_grad():
        for s in range(0, feats.shape[0], batch_size):
            x = feats[s : s + batch_size]
            b = x.shape[0]
            t = x.flatten(0, 1).to(device, torch.float32)
            z = base_model.pool(base_model.features(t)).flatten(1)
            zs.append(z.view(b, 2, -1).cpu())
            ys.append(base_model.classifier(z).view(b, 2, -1).cpu())
    return torch.cat(zs), torch.cat(ys)


def _sample_weights(
    labels: torch.Tensor, groups: int, per_class: bool, balance: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-module weights (pos_w [G], neg_w [G]) of positive and negative images.

    Balanced (``pos_w / neg_w = N_neg / N_pos``) and scaled to mean 1 over the
    data set; all ones when not balancing or for the shared module."""
    n = labels.shape[0]
    if not (per_class and balance):
        return torch.ones(groups), torch.ones(groups)
    pos = torch.bincount(labels, minlength=groups).double()
    neg = n - pos
    raw_pos = torch.where(pos > 0, neg / pos.clamp_min(1), torch.ones_like(pos))
    mean = (neg + pos * raw_pos) / n
    return (raw_pos / mean).float(), (1.0 / mean).float()


def srae_optimiser(srae: SRAE, cfg: SRAEConfig) -> torch.optim.Adam:
    """Adam over every SRAE parameter with Eq. 5's L2 terms as its (coupled) weight decay.

    ``lambda * ||W||^2`` in the loss adds ``2 lambda W`` to W's gradient; Adam's ``weight_decay``
    adds exactly that before its moments (not AdamW's decoupled decay), so the updates are the
    loss-term ones up to floating-point order. Why not the loss term: with one module per class
    the weights are large (Cf = 1280, widths 256-64: ~0.7M per class, 70M for 102 classes) and a
    step was memory-bound: the squares and their backward, and Adam's per-tensor element-wise
    passes, took ~60 % of it (torch.profiler, issue 17). Fused Adam does its update in one pass.
    Biases (and the predictor bias) get no decay, as Eq. 5.
    """
    enc_w, dec_w, v_w = srae.weight_groups()
    decayed = {id(p) for p in (*enc_w, *dec_w, *v_w)}
    groups = [
        {"params": enc_w, "weight_decay": 2 * cfg.lambda_encoder},
        {"params": dec_w, "weight_decay": 2 * cfg.lambda_decoder},
        {"params": v_w, "weight_decay": 2 * cfg.lambda_predictor},
        {"params": [p for p in srae.parameters() if id(p) not in decayed], "weight_decay": 0.0},
    ]
    fused = all(p.device.type in ("cpu", "cuda") for p in srae.parameters())  # where torch has a fused Adam
    return torch.optim.Adam(groups, lr=cfg.lr, fused=fused)


def train_srae(
    base_model: BaseModel,
    feats: torch.Tensor,
    labels: torch.Tensor,
    cfg: SRAEConfig | None = None,
    progress: bool = True,
    device: torch.device | str | None = None,
) -> SRAEModel:
    """Train the SRAE explanation module(s) of a frozen base model (Eq. 5).

    Args:
        base_model: trained :class:`BaseModel`; left unchanged (used in eval mode).
        feats: [N, 2, Ct, h, w] cached trunk features (0 original, 1 flipped).
        labels: [N] long labels (used only to up-weight each module's positives).
        cfg: :class:`SRAEConfig`; None: defaults.
        progress: show a tqdm bar over epochs.
        device: where to train; None: the base model's device.

    Returns:
        :class:`SRAEModel` in eval mode, ``history`` holding the per-epoch
        mean of each loss term (averaged over modules).
    """
    cfg = cfg or SRAEConfig()
    if device is None:
        device = next(base_model.parameters()).device
    was_training = base_model.training
    base_model.eval()
    try:
        z_all, y_all = pooled_features(base_model, feats, device=device)
    finally:
        base_model.train(was_training)
    cf, c = z_all.shape[-1], y_all.shape[-1]
    groups, outputs = (c, 1) if cfg.per_class else (1, c)
    srae = SRAE(
        cf,
        cfg.n_xfeatures,
        tuple(cfg.hidden),
        groups,
        outputs,
        cfg.x_activation,
        cfg.predictor_bias,
        generator=torch.Generator().manual_seed(cfg.seed),
    ).to(device)
    model = SRAEModel(base_model, srae, cfg)
    labels = labels.long().cpu()
    pos_w, neg_w = _sample_weights(labels, groups, cfg.per_class, cfg.balance_positives)
    pos_w, neg_w = pos_w.to(device), neg_w.to(device)
    cache = torch.cat([z_all, y_all], -1)  # [N, 2, Cf + C]: flips index both together
    enc_w, dec_w, v_w = srae.weight_groups()
    opt = srae_optimiser(srae, cfg)
    data_gen = torch.Generator().manual_seed(cfg.seed + 1)
    srae.train()
    bar = tqdm(range(cfg.epochs), desc="SRAE", disable=not progress)
    for _ in bar:
        sums = {"loss": 0.0, "faith": 0.0, "sparse": 0.0, "pull_away": 0.0}
        steps = 0
        for batch in iterate_batches(
            cache, labels, cfg.batch_size, shuffle=True, random_flip=True, generator=data_gen, device=device
        ):
            z, y_hat = batch.x[:, :cf], batch.x[:, cf:]
            x, recon, y_bar = srae(z)
            if cfg.per_class:
                target = y_hat.unsqueeze(-1)  # [B, C, 1]: module j explains logit j
                is_pos = batch.y[:, None] == torch.arange(groups, device=device)[None]
                w = torch.where(is_pos, pos_w[None], neg_w[None])  # [B, G]
            else:
                target = y_hat.unsqueeze(1)  # [B, 1, C]
                w = None
            faith = faithfulness_loss(y_bar, target, w)  # [G]
            sparse = sparse_reconstruction_loss(recon, z.unsqueeze(1), cfg.q, w)  # [G]
            pt = pull_away_loss(x)  # [G]
            # Eq. 5's L2 terms are in the optimiser (srae_optimiser); their value joins the logged loss
            l2 = (
                cfg.lambda_encoder * l2_value(enc_w)
                + cfg.lambda_decoder * l2_value(dec_w)
                + cfg.lambda_predictor * l2_value(v_w)
            )
            loss = (cfg.faithfulness * faith + cfg.beta * sparse + cfg.eta * pt).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sums["loss"] += (loss.item() + l2) / groups
            sums["faith"] += faith.mean().item()
            sums["sparse"] += sparse.mean().item()
            sums["pull_away"] += pt.mean().item()
            steps += 1
        epoch_stats = {k: v / max(steps, 1) for k, v in sums.items()}
        model.history.append(epoch_stats)
        bar.set_postfix({k: f"{v:.4g}" for k, v in epoch_stats.items()})
    model.eval()
    return model


# --------------------------------------------------------------------------- metrics


def faithfulness_metrics(
    model: SRAEModel,
    base_model: BaseModel | None,
    feats: torch.Tensor,
    batch_size: int = 256,
    flip: int = 0,
) -> dict[str, object]:
    """Faithfulness of the SRAE to the base logits (paper Sec. 4.1, (1)).

    For each explained logit j (module j), over the N images of ``feats``
    (every image is a positive or a negative of every class):

    - ``F_reg_j = 1/N sum_m |y_bar_j - y_hat_j|`` (mean absolute error of the logit);
    - ``F_cls_j = c_r / N``: replace ``y_hat_j`` by ``y_bar_j`` in the base
      logit vector, c_r = images whose argmax does not change.

    ``F_reg`` and ``F_cls`` are their means over classes (the paper averages
    over categories, Tables 1 and 3). ``F_cls_joint`` (not in the paper):
    fraction of images where ``argmax y_bar == argmax y_hat`` with all logits
    replaced at once.

    Args:
        model: trained :class:`SRAEModel`.
        base_model: the base model (None: ``model.base``).
        feats: [N, 2, Ct, h, w] cached trunk features.
        flip: orientation evaluated (0 original, 1 flipped).

    Returns:
        dict with floats ``F_reg``, ``F_cls``, ``F_cls_joint`` and lists
        ``F_reg_per_class``, ``F_cls_per_class`` (length C).
    """
    base = base_model if base_model is not None else model.base
    base.eval()
    model.eval()
    device = model.device
    y_hat, y_bar = [], []
    with torch.no_grad():
        for s in range(0, feats.shape[0], batch_size):
            t = feats[s : s + batch_size, flip].to(device, torch.float32)
            z = base.pool(base.features(t)).flatten(1)
            y_hat.append(base.classifier(z).cpu())
            y_bar.append(model.approx_logits(z).cpu())
    yh, yb = torch.cat(y_hat).double(), torch.cat(y_bar).double()
    pred = yh.argmax(1)
    f_reg = (yb - yh).abs().mean(0)  # [C]
    f_cls = []
    for j in range(yh.shape[1]):
        mixed = yh.clone()
        mixed[:, j] = yb[:, j]
        f_cls.append((mixed.argmax(1) == pred).double().mean().item())
    return {
        "F_reg": f_reg.mean().item(),
        "F_cls": float(sum(f_cls) / len(f_cls)),
        "F_cls_joint": (yb.argmax(1) == pred).double().mean().item(),
        "F_reg_per_class": f_reg.tolist(),
        "F_cls_per_class": f_cls,
    }


def orthogonality_from_covariance(cov: torch.Tensor, eps: float = 1e-12) -> tuple[float, float, int]:
    """O1 and O2 of a covariance matrix C [n, n] among x-features (paper Sec. 4.1, (2)).

    ``P = diag(C)^-1/2 C diag(C)^-1/2``, ``O1 = ||P||_F - sqrt(n)``,
    ``O2 = -log det P`` (inf when P is singular). An x-feature of zero
    variance (e.g. never active) has no correlation; it is given a unit row
    and column of P (counted as orthogonal to the others).

    Returns:
        (O1, O2, number of zero-variance x-features).
    """
    cov = cov.double()
    n = cov.shape[0]
    var = torch.diagonal(cov).clamp_min(0)
    const = var <= eps * max(var.max().item(), eps)
    inv = torch.where(const, torch.zeros_like(var), var.clamp_min(eps).rsqrt())
    p = inv[:, None] * cov * inv[None, :]
    p = p + torch.diag(const.double())
    o1 = torch.linalg.matrix_norm(p).item() - math.sqrt(n)
    sign, logdet = torch.linalg.slogdet(p)
    o2 = -logdet.item() if sign.item() > 0 else math.inf
    return o1, o2, int(const.sum().item())


def orthogonality_from_maps(maps: torch.Tensor) -> tuple[float, float, int]:
    """O1, O2 of n attention-map vectors: maps [n, V] (each row one x-feature's
    maps concatenated over images and pixels). See :func:`orthogonality_from_covariance`."""
    maps = maps.double()
    centred = maps - maps.mean(1, keepdim=True)
    return orthogonality_from_covariance(centred @ centred.T / maps.shape[1])


def orthogonality_metrics(
    model: SRAEModel,
    base_model: BaseModel | None,
    feats: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int = 64,
    size: int | None = None,
    flip: int = 0,
    signed: bool = True,
) -> dict[str, object]:
    """Orthogonality of the x-features' attention maps (paper Sec. 4.1, (2)).

    Reading of the paper: for module j (class j) and its positive images
    (``labels == j``; Tables 1 and 3 report O1/O2 on positives), each image m
    gives one attention map per x-feature n, normalised to sum 1 over the
    pixels (the paper's ``S^{n,m} = C^{n,m} / sum C^{n,m}``); x-feature n's
    vector is its maps concatenated over images and pixels; C is the n x n
    covariance of these vectors, P its correlation matrix,
    ``O1 = ||P||_F - sqrt(n)``, ``O2 = -log det P`` (0 at P = I). The maps
    are the per-x-feature Grad-CAMs (the paper used ExcitationBP c-MWP),
    at the feature-map size or bilinearly upsampled to ``size``. ``O1`` and
    ``O2`` are the means over classes with at least one positive image.

    Args:
        model: trained :class:`SRAEModel`.
        base_model: the base model (None: ``model.base``; must be the model's base).
        feats: [N, 2, Ct, h, w] cached trunk features.
        labels: [N] long labels.
        size: optional side to upsample the maps to before the statistics.
        flip: orientation evaluated.
        signed: maps of ``sign(v_ji) x_i`` as in :meth:`SRAEModel.explain`
            (True) or of the raw ``x_i`` (False); identical for x-features
            with a positive weight in the class logit.

    Returns:
        dict with floats ``O1``, ``O2``, lists ``O1_per_class``, ``O2_per_class``
        (NaN for classes without positives) and ``n_constant`` (x-features of
        zero variance, summed over classes).
    """
    if base_model is not None and base_model is not model.base:
        raise ValueError("orthogonality_metrics needs the SRAE model's own base model")
    c = model.base.classifier.out_features
    n = model.srae.n
    sums = torch.zeros(c, n, dtype=torch.float64)
    prods = torch.zeros(c, n, n, dtype=torch.float64)
    counts = torch.zeros(c, dtype=torch.float64)
    labels = labels.long().cpu()
    for s in range(0, feats.shape[0], batch_size):
        t = feats[s : s + batch_size, flip]
        y = labels[s : s + batch_size]
        cams = model.x_feature_cams(t, classes=y, signed=signed)["cams"]  # [B, n, h, w]
        if size is not None:
            cams = F.interpolate(cams, size=(size, size), mode="bilinear", align_corners=False).clamp_min(0)
        cams = cams.flatten(2).double().cpu()  # [B, n, V]
        cams = cams / cams.sum(-1, keepdim=True).clamp_min(1e-12)  # S^{n,m}: sum 1 per map
        for j in torch.unique(y).tolist():
            m = cams[y == j].transpose(0, 1).flatten(1)  # [n, b_j * V]
            sums[j] += m.sum(1)
            prods[j] += m @ m.T
            counts[j] += m.shape[1]
    o1s, o2s, n_const = [], [], 0
    for j in range(c):
        if counts[j] == 0:
            o1s.append(math.nan)
            o2s.append(math.nan)
            continue
        mean = sums[j] / counts[j]
        cov = prods[j] / counts[j] - mean[:, None] * mean[None, :]
        o1, o2, k = orthogonality_from_covariance(cov)
        o1s.append(o1)
        o2s.append(o2)
        n_const += k
    valid = [j for j in range(c) if counts[j] > 0]
    return {
        "O1": float(sum(o1s[j] for j in valid) / max(len(valid), 1)),
        "O2": float(sum(o2s[j] for j in valid) / max(len(valid), 1)),
        "O1_per_class": o1s,
        "O2_per_class": o2s,
        "n_constant": n_const,
    }


__all__ = [
    "SRAE",
    "SRAEConfig",
    "SRAEModel",
    "faithfulness_loss",
    "faithfulness_metrics",
    "grad_cam",
    "l2_penalty",
    "orthogonality_from_covariance",
    "orthogonality_from_maps",
    "orthogonality_metrics",
    "pooled_features",
    "pull_away_loss",
    "sparse_reconstruction_loss",
    "train_srae",
]
