"""Unit tests of the SRAE baseline: hand-checked loss terms, Grad-CAM, metrics, a tiny run."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lvwlib.core.base_model import BaseModel
from lvwlib.methods.srae.model import (
    SRAEConfig,
    faithfulness_loss,
    faithfulness_metrics,
    grad_cam,
    orthogonality_from_covariance,
    orthogonality_from_maps,
    orthogonality_metrics,
    pooled_features,
    pull_away_loss,
    sparse_reconstruction_loss,
    train_srae,
)

# ----------------------------------------------------------------------------- loss terms


def test_pull_away_2x2():
    # rows = samples (M = 2), columns = x-features (n = 2)
    # E_1 = (1, 1), E_2 = (0, 1): cos = 1 / (sqrt(2) * 1), cos^2 = 1/2
    # ordered pairs (1,2), (2,1): sum = 1;  1 / (n (n-1)) = 1/2  ->  0.5
    e = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    assert pull_away_loss(e).item() == pytest.approx(0.5)


def test_pull_away_3_features():
    # M = 2, n = 3: E_1 = (1, 0), E_2 = (0, 1), E_3 = (1, 1)
    # cos12 = 0, cos13 = cos23 = 1/sqrt(2) -> squares 0, 1/2, 1/2
    # ordered pairs: 2 * (0 + 1/2 + 1/2) = 2;  / (3 * 2) = 1/3
    e = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    assert pull_away_loss(e).item() == pytest.approx(1 / 3)


def test_pull_away_orthogonal_zero_column_and_grouped():
    # orthogonal columns -> 0; an all-zero column counts as orthogonal -> 0
    assert pull_away_loss(torch.tensor([[1.0, 0.0], [0.0, 2.0]])).item() == pytest.approx(0.0)
    assert pull_away_loss(torch.tensor([[1.0, 0.0], [1.0, 0.0]])).item() == pytest.approx(0.0)
    x = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 1.0]], requires_grad=True)
    pull_away_loss(x).backward()
    assert torch.isfinite(x.grad).all() and (x.grad[:, 1] == 0).all()  # no NaN at a dead column
    # the grouped form [M, G, n] gives one value per group
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # 0.5
    b = torch.tensor([[1.0, 1.0], [1.0, 1.0]])  # identical columns: cos^2 = 1 -> 1.0
    out = pull_away_loss(torch.stack([a, b], 1))
    assert out.shape == (2,)
    assert out.tolist() == pytest.approx([0.5, 1.0])


def test_sparse_reconstruction_log_penalty():
    # Z = [[1, 2], [3, 4]], recon = [[1, 0], [3, 3]]: errors [[0, -2], [0, -1]]
    # Q_1 = (0 + 0) / 2 = 0, Q_2 = (4 + 1) / 2 = 2.5
    # q = 2: (log(1 + 0) + log(1 + 5)) / S_z = log(6) / 2 = 0.89588
    z = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    r = torch.tensor([[1.0, 0.0], [3.0, 3.0]])
    assert sparse_reconstruction_loss(r, z, q=2.0).item() == pytest.approx(math.log(6) / 2)
    # sample weights (1.5, 0.5): Q_2 = (1.5 * 4 + 0.5 * 1) / 2 = 3.25 -> log(1 + 6.5) / 2
    w = torch.tensor([1.5, 0.5])
    assert sparse_reconstruction_loss(r, z, q=2.0, weights=w).item() == pytest.approx(
        math.log(7.5) / 2
    )
    # perfect reconstruction -> 0
    assert sparse_reconstruction_loss(z, z, q=10.0).item() == pytest.approx(0.0)


def test_faithfulness_loss():
    # (1 - 0)^2 and (2 - 0)^2 -> mean 2.5; weights (2, 0) -> (2 * 1 + 0) / 2 = 1
    yb = torch.tensor([[1.0], [2.0]])
    yh = torch.zeros(2, 1)
    assert faithfulness_loss(yb, yh).item() == pytest.approx(2.5)
    assert faithfulness_loss(yb, yh, torch.tensor([2.0, 0.0])).item() == pytest.approx(1.0)


# ----------------------------------------------------------------------------- Grad-CAM


def test_grad_cam_linear_score_of_gap():
    # A: one image, 2 channels, 2x2.  A_1 = [[1, 2], [3, 4]], A_2 = [[4, 0], [0, 8]]
    # s_1 = w . GAP(A) + 3 with w = (2, -1): d s_1 / d A_k[u, v] = w_k / 4 everywhere,
    # so alpha_1 = mean gradient = (0.5, -0.25) and
    # cam_1 = ReLU(0.5 A_1 - 0.25 A_2) = ReLU([[-0.5, 1], [1.5, 0]]) = [[0, 1], [1.5, 0]].
    # s_2 = -s_1: alpha_2 = (-0.5, 0.25), cam_2 = ReLU([[0.5, -1], [-1.5, 0]]) = [[0.5, 0], [0, 0]].
    acts = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[4.0, 0.0], [0.0, 8.0]]]], requires_grad=True)
    w = torch.tensor([2.0, -1.0])
    s1 = acts.mean((2, 3)) @ w + 3.0
    scores = torch.stack([s1, -s1], 1)  # [1, 2]
    alpha, cams = grad_cam(acts, scores)
    assert alpha.shape == (1, 2, 2) and cams.shape == (1, 2, 2, 2)
    torch.testing.assert_close(alpha[0], torch.tensor([[0.5, -0.25], [-0.5, 0.25]]))
    torch.testing.assert_close(cams[0, 0], torch.tensor([[0.0, 1.0], [1.5, 0.0]]))
    torch.testing.assert_close(cams[0, 1], torch.tensor([[0.5, 0.0], [0.0, 0.0]]))


# ----------------------------------------------------------------------------- orthogonality


def test_orthogonality_known_answers():
    # uncorrelated maps: P = I -> O1 = 0, O2 = 0
    a = torch.tensor([1.0, -1.0, 1.0, -1.0])
    b = torch.tensor([1.0, 1.0, -1.0, -1.0])
    o1, o2, k = orthogonality_from_maps(torch.stack([a, b]))
    assert (o1, o2, k) == (pytest.approx(0.0, abs=1e-12), pytest.approx(0.0, abs=1e-12), 0)
    # a = (1, 0, -1), b = (1, -1, 0): zero means, a.b = 1, |a|^2 = |b|^2 = 2 -> rho = 1/2
    # ||P||_F = sqrt(1 + 1 + 2 * 1/4) = sqrt(2.5): O1 = sqrt(2.5) - sqrt(2) = 0.16693
    # det P = 1 - 1/4: O2 = -log(3/4) = 0.28768
    a = torch.tensor([1.0, 0.0, -1.0])
    b = torch.tensor([1.0, -1.0, 0.0])
    o1, o2, _ = orthogonality_from_maps(torch.stack([a, b]))
    assert o1 == pytest.approx(math.sqrt(2.5) - math.sqrt(2))
    assert o2 == pytest.approx(-math.log(0.75))
    # identical maps: P = ones -> O1 = 2 - sqrt(2), det 0 -> O2 = inf
    o1, o2, _ = orthogonality_from_maps(torch.stack([a, a]))
    assert o1 == pytest.approx(2 - math.sqrt(2))
    assert o2 == math.inf
    # a zero-variance x-feature counts as orthogonal
    o1, o2, k = orthogonality_from_covariance(torch.tensor([[2.0, 0.0], [0.0, 0.0]]))
    assert (o1, o2, k) == (pytest.approx(0.0, abs=1e-12), pytest.approx(0.0, abs=1e-12), 1)


# ----------------------------------------------------------------------------- end to end


def _tiny_setup(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    tail = nn.Sequential(nn.Conv2d(4, 6, 1), nn.ReLU())
    torch.manual_seed(seed)
    base = BaseModel(tail, feature_channels=6, num_classes=3)
    feats = torch.randn(12, 2, 4, 3, 3, generator=g).half()
    labels = torch.arange(12) % 3
    return base, feats, labels


_TINY = SRAEConfig(n_xfeatures=3, hidden=(16, 8), epochs=4, batch_size=4, lr=1e-2)


def test_train_srae_end_to_end():
    base, feats, labels = _tiny_setup()
    before = {k: v.clone() for k, v in base.state_dict().items()}
    model = train_srae(base, feats, labels, _TINY, progress=False)
    # base untouched
    for k, v in base.state_dict().items():
        torch.testing.assert_close(v, before[k])
    assert len(model.history) == _TINY.epochs
    assert all(math.isfinite(v) for h in model.history for v in h.values())

    fm = faithfulness_metrics(model, base, feats)
    assert math.isfinite(fm["F_reg"]) and fm["F_reg"] >= 0
    assert 0.0 <= fm["F_cls"] <= 1.0 and 0.0 <= fm["F_cls_joint"] <= 1.0
    assert len(fm["F_reg_per_class"]) == 3 and len(fm["F_cls_per_class"]) == 3

    om = orthogonality_metrics(model, base, feats, labels)
    assert math.isfinite(om["O1"]) and om["O1"] >= -1e-9
    assert om["O2"] >= -1e-9 and not math.isnan(om["O2"])
    assert len(om["O1_per_class"]) == 3
    om_up = orthogonality_metrics(model, None, feats, labels, size=6)
    assert math.isfinite(om_up["O1"]) and om_up["O1"] >= -1e-9

    trunk = feats[:5, 0]
    logits, maps = model.explain(trunk)
    assert logits.shape == (5, 3) and maps.shape == (5, 1, 3, 3)
    assert (maps >= 0).all() and torch.isfinite(maps).all()
    torch.testing.assert_close(logits, base(trunk.float()))
    # works under no_grad too, same answer
    with torch.no_grad():
        logits2, maps2 = model.explain(trunk)
    torch.testing.assert_close(maps2, maps)

    # the map is the contribution-weighted sum of per-x-feature Grad-CAMs
    out = model.x_feature_cams(trunk)
    assert out["cams"].shape == (5, 3, 3, 3) and (out["cams"] >= 0).all()
    manual = (out["contrib"].clamp_min(0)[:, :, None, None] * out["cams"]).sum(1, keepdim=True)
    torch.testing.assert_close(manual, maps)
    torch.testing.assert_close(out["classes"], logits.argmax(1))


def test_per_sample_module_matches_grouped_forward():
    base, feats, labels = _tiny_setup()
    model = train_srae(base, feats, labels, _TINY, progress=False)
    z_all, y_all = pooled_features(base, feats)
    assert z_all.shape == (12, 2, 6) and y_all.shape == (12, 2, 3)
    z = z_all[:, 0]
    x_all = model.srae(z)[0]  # [N, G, n]
    classes = torch.tensor([2, 0, 1, 1, 0, 2, 2, 0, 1, 0, 1, 2])
    x, v = model.x_features(z, classes)
    torch.testing.assert_close(x, x_all[torch.arange(12), classes])
    torch.testing.assert_close(v, model.srae.v[classes, :, 0])
    # y_bar_j = v_j^T x_j for the module of class j
    yb = model.approx_logits(z)
    torch.testing.assert_close(yb[torch.arange(12), classes], (v * x).sum(1))


def test_seeded_and_shared_variant():
    base, feats, labels = _tiny_setup()
    m1 = train_srae(base, feats, labels, _TINY, progress=False)
    m2 = train_srae(base, feats, labels, _TINY, progress=False)
    for (k, a), (_, b) in zip(m1.srae.state_dict().items(), m2.srae.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, msg=k)

    cfg = SRAEConfig(
        n_xfeatures=2, hidden=(8,), per_class=False, epochs=2, batch_size=6, x_activation="softplus"
    )
    shared = train_srae(base, feats, labels, cfg, progress=False)
    assert shared.srae.groups == 1 and shared.srae.v.shape == (1, 2, 3)
    logits, maps = shared.explain(feats[:4, 1])
    assert maps.shape == (4, 1, 3, 3) and (maps >= 0).all()
    fm = faithfulness_metrics(shared, None, feats)
    assert 0.0 <= fm["F_cls"] <= 1.0


def test_faithfulness_metrics_known_answer():
    base, feats, labels = _tiny_setup()
    cfg = SRAEConfig(n_xfeatures=2, hidden=(4,), epochs=1, x_activation="relu")
    model = train_srae(base, feats, labels, cfg, progress=False)
    # exact approximation: F_reg = 0, F_cls = 1
    model.approx_logits = lambda z: base.classifier(z)
    fm = faithfulness_metrics(model, base, feats)
    assert fm["F_reg"] == pytest.approx(0.0) and fm["F_cls"] == 1.0 and fm["F_cls_joint"] == 1.0
    # every logit shifted by +100: |error| = 100; replacing logit j makes j the argmax,
    # unchanged only where the base already predicts j -> F_cls = mean_j frac(pred == j) = 1/C;
    # the shift keeps the joint argmax -> F_cls_joint = 1
    model.approx_logits = lambda z: base.classifier(z) + 100.0
    fm = faithfulness_metrics(model, base, feats)
    assert fm["F_reg"] == pytest.approx(100.0)
    assert fm["F_cls"] == pytest.approx(1 / 3)
    assert fm["F_cls_joint"] == 1.0


def test_l2_in_the_optimiser_equals_the_loss_term():
    """Eq. 5's L2 as Adam's coupled weight decay: the same updates as the loss term (issue 17's speed-up)."""
    from lvwlib.methods.srae.model import SRAE, l2_penalty, l2_value, srae_optimiser

    cfg = SRAEConfig(hidden=(6, 4), n_xfeatures=2, lambda_encoder=0.3, lambda_decoder=0.2, lambda_predictor=0.1,
                     predictor_bias=True, lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    z = torch.rand(5, 8, generator=gen)
    fast = SRAE(8, 2, (6, 4), groups=3, outputs=1, predictor_bias=True, generator=torch.Generator().manual_seed(1))
    ref = SRAE(8, 2, (6, 4), groups=3, outputs=1, predictor_bias=True, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref.v_bias.fill_(0.5)
        fast.v_bias.fill_(0.5)
    opt_fast, opt_ref = srae_optimiser(fast, cfg), torch.optim.Adam(ref.parameters(), lr=cfg.lr)
    enc, dec, v = ref.weight_groups()
    assert l2_value(enc) == pytest.approx(l2_penalty(enc).item(), rel=1e-6)
    for _ in range(4):
        for model, opt, with_l2 in ((fast, opt_fast, False), (ref, opt_ref, True)):
            x, recon, y = model(z)
            loss = x.pow(2).sum() + (recon - z[:, None]).pow(2).sum() + y.sum()
            if with_l2:
                loss = loss + 0.3 * l2_penalty(enc) + 0.2 * l2_penalty(dec) + 0.1 * l2_penalty(v)
            opt.zero_grad()
            loss.backward()
            opt.step()
    for a, b in zip(fast.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert fast.v_bias.ne(0.5).all()  # the predictor bias trained (undecayed, as in the loss form)


def test_shared_input_layer_same_weights_and_outputs_as_per_group():
    """The encoder's first layer stores its weight [d_in, G, d_out]: the same draws, the same outputs."""
    from lvwlib.methods.srae.model import _GroupedLinear

    shared = _GroupedLinear(3, 4, 2, torch.Generator().manual_seed(5), shared_input=True)
    plain = _GroupedLinear(3, 4, 2, torch.Generator().manual_seed(5))
    assert shared.weight.shape == (4, 3, 2) and plain.weight.shape == (3, 4, 2)
    assert torch.equal(shared.weight.permute(1, 0, 2), plain.weight) and torch.equal(shared.bias, plain.bias)
    h = torch.rand(5, 4, generator=torch.Generator().manual_seed(6))
    out = shared(h)  # [5, 3, 2]
    torch.testing.assert_close(out, plain(h))
    for g in range(3):
        torch.testing.assert_close(out[:, g], h @ plain.weight[g] + plain.bias[g])
        torch.testing.assert_close(shared(h, g), out[:, g])
    with pytest.raises(ValueError, match="shared-input"):
        shared(torch.rand(5, 3, 4))
