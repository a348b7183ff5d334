"""Known answers for the official-recipe options of ProtoPNet and ProtoPShare (issue 15 item 3):
weight decay of the tail and add-on only, ProtoPShare's joint epochs between merges, its curve."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from torch import nn

import lvwlib.methods.protopshare as ps
from lvwlib.core.config import LVWConfig
from lvwlib.core.devices import CPU
from lvwlib.core.model import PrototypeNet
from lvwlib.core.train import joint_optimiser, set_joint_lrs, train_prototype_net, warm_optimiser
from lvwlib.experiment import calibrate
from lvwlib.methods.protopshare import ProtoPShareConfig, curve, protopshare, step_config
from lvwlib.methods.registry import Fitted, Needed


def conv_net(words_per_class: int = 2) -> PrototypeNet:
    """A trainable convolutional tail with batch norm, Ct = 4 -> Cf = 6, 3 classes, D = 5."""
    torch.manual_seed(0)
    tail = nn.Sequential(nn.Conv2d(4, 6, 1), nn.BatchNorm2d(6), nn.ReLU())
    return PrototypeNet(tail, 6, num_classes=3, words_per_class=words_per_class, feature_dim=5, seed=1)


def tiny_data(n: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    """Cached features [n, 2, 4, 2, 2] float16 and labels [n] of 3 classes."""
    feats = torch.randn(n, 2, 4, 2, 2, generator=torch.Generator().manual_seed(0)).half()
    return feats, torch.arange(n) % 3


PNET = LVWConfig(words_per_class=2, feature_dim=5, class_specific=True, separation=-0.08, beta_align=0.0,
                 warm_epochs=1, joint_epochs=2, push_every=1, last_layer_epochs=2, batch_size=4)
SHARE = ProtoPShareConfig(merge_fraction=0.2, steps=2, finetune_epochs=2, batch_size=4)


def trained_pnet() -> PrototypeNet:
    net = conv_net()
    feats, labels = tiny_data()
    train_prototype_net(net, feats, labels, None, PNET, progress=False)
    return net


def sums(model: nn.Module) -> dict[str, float]:
    sd = model.state_dict()
    return {k: float(sd[k].double().sum()) for k in ("words", "tail.0.weight", "add_on.0.weight", "last_layer.weight")}


# ----------------------------------------------------------------------------- ProtoPNet: weight decay


def test_weight_decay_moves_tail_and_add_on_only():
    # zero loss gradients: one Adam step with L2 decay wd moves p by lr * g / (|g| + eps) with g = wd * p,
    # i.e. by ~lr * sign(p); undecayed parameters (the words) do not move at all
    net, lr = conv_net(), 0.01
    opt = joint_optimiser(net, lr, lr, weight_decay=1e-3)
    before = {k: v.detach().clone() for k, v in net.named_parameters()}
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    moved = {k for k, v in net.named_parameters() if not torch.equal(v.detach(), before[k])}
    decayed = {k for k, _ in net.named_parameters() if k.startswith(("tail.", "add_on."))}
    assert moved == {k for k in decayed if before[k].abs().sum() > 0}  # zero biases stay zero
    for k in moved:
        g = 1e-3 * before[k]
        step = lr * g / (g.abs() + 1e-8)
        assert torch.allclose(dict(net.named_parameters())[k].detach(), before[k] - step, atol=1e-7)
    assert "words" not in moved and "last_layer.weight" not in {k for g in opt.param_groups for k in g}


def test_optimisers_without_weight_decay_keep_todays_groups():
    net = conv_net()
    joint = joint_optimiser(net, 1e-4, 3e-3)
    assert [len(g["params"]) for g in joint.param_groups] == [len(list(net.tail.parameters())),
                                                             len(list(net.add_on.parameters())) + 1]
    assert all(g["weight_decay"] == 0 for g in joint.param_groups)
    assert len(warm_optimiser(net, 3e-3).param_groups) == 1
    decayed = joint_optimiser(net, 1e-4, 3e-3, 1e-3)
    assert [g["weight_decay"] for g in decayed.param_groups] == [1e-3, 1e-3, 0]
    assert decayed.param_groups[2]["params"] == [net.words]
    set_joint_lrs(decayed, 1e-5, 3e-4)
    assert [g["lr"] for g in decayed.param_groups] == [1e-5, 3e-4, 3e-4]
    assert [g["weight_decay"] for g in warm_optimiser(net, 3e-3, 1e-3).param_groups] == [1e-3, 0]


def test_last_layer_is_never_decayed():
    # tail, add-on and words frozen by a zero lr (Adam moves nothing at lr 0, decay or not): only the
    # last-layer stage trains, and its result is the same with and without weight decay
    feats, labels = tiny_data()
    frozen = dict(lr_tail=0.0, lr_words=0.0, warm_epochs=1, joint_epochs=1)
    a, b = conv_net(), conv_net()
    train_prototype_net(a, feats, labels, None, LVWConfig(**{**PNET.__dict__, **frozen}), progress=False)
    train_prototype_net(b, feats, labels, None, LVWConfig(**{**PNET.__dict__, **frozen, "weight_decay": 1e-3}),
                        progress=False)
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["last_layer.weight"], conv_net().state_dict()["last_layer.weight"])  # it trained


# ----------------------------------------------------------------------------- ProtoPShare: joint epochs


def test_defaults_give_todays_numbers():
    # recorded at 1 torch thread with the code before the options existed (commit ce043f0), the same
    # tiny run; rel 5e-3: at 3 threads (tests/conftest.py) the sums move by up to ~1e-3. Bit identity
    # at default settings was checked against that code in one process when the options were added.
    net = trained_pnet()
    feats, labels = tiny_data()
    out = protopshare(net, feats, labels, SHARE, PNET, progress=False)
    assert sums(net) == pytest.approx({"words": 15.653246656060219, "tail.0.weight": -0.5352448036428541,
                                       "add_on.0.weight": -2.7404581364244223,
                                       "last_layer.weight": 0.039807677268981934}, rel=5e-3)
    assert sums(out["model"]) == pytest.approx({"words": 10.236319154500961, "tail.0.weight": -0.5352448036428541,
                                                "add_on.0.weight": -2.7404581364244223,
                                                "last_layer.weight": 0.06564094126224518}, rel=5e-3)
    assert out["steps"][-1]["finetune_loss"] == pytest.approx(3.1434728701909385, rel=5e-3)
    assert not any(k.startswith("joint_") for k in out["steps"][0])
    # the merge step's tail is the ProtoPNet's (no joint epochs)
    assert torch.equal(out["model"].tail[0].weight, net.tail[0].weight)


def test_unset_lrs_are_the_protopnets_and_zero_joint_epochs_change_nothing():
    net = trained_pnet()
    feats, labels = tiny_data()
    explicit = ProtoPShareConfig(**{**SHARE.__dict__, "joint_epochs": 0, "lr_tail": PNET.lr_tail,
                                    "lr_words": PNET.lr_words, "lr_last": PNET.lr_last, "weight_decay": 0.0})
    a = protopshare(net, feats, labels, SHARE, PNET, progress=False)
    b = protopshare(net, feats, labels, explicit, PNET, progress=False)
    sa, sb = a["model"].state_dict(), b["model"].state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa) and a["steps"] == b["steps"]
    cfg = step_config(ProtoPShareConfig(lr_last=1e-4, weight_decay=1e-3, lr_decay_every=5), PNET)
    assert (cfg.lr_last, cfg.weight_decay, cfg.lr_decay_every, cfg.lr_tail) == (1e-4, 1e-3, 5, PNET.lr_tail)
    assert cfg.class_specific and cfg.beta_align == 0 and cfg.last_layer_epochs == 25


def test_joint_epochs_train_the_tail_then_push_before_each_merge(monkeypatch):
    net = trained_pnet()
    feats, labels = tiny_data()
    lrs: list[list[float]] = []
    real = ps.joint_epoch

    def record(model, source, cfg, optimiser, generator, runtime):
        lrs.append([g["lr"] for g in optimiser.param_groups])
        return real(model, source, cfg, optimiser, generator, runtime)

    monkeypatch.setattr(ps, "joint_epoch", record)
    cfg = ProtoPShareConfig(**{**SHARE.__dict__, "joint_epochs": 2, "lr_tail": 1e-2, "lr_words": 3e-2,
                               "weight_decay": 1e-3, "lr_decay_every": 2})
    descriptors: list[torch.Tensor] = []
    real_desc = ps.min_distance_descriptors

    def spy(model, x, batch_size=64, device="cpu"):
        # what each merge step describes: words on training patches (pushed after the joint epochs)
        with torch.no_grad():
            latent = model.latent(x[:, 0].float()).permute(0, 2, 3, 1).reshape(-1, model.words.shape[1])
        descriptors.append(torch.cdist(model.words.detach(), latent, compute_mode="donot_use_mm_for_euclid_dist").min(1).values)  # [M] (batch rounding: ~1e-7)
        return real_desc(model, x, batch_size, device)

    monkeypatch.setattr(ps, "min_distance_descriptors", spy)
    out = protopshare(net, feats, labels, cfg, PNET, progress=False)
    # 2 steps x 2 joint epochs; decay x 0.1 every 2 joint epochs counted over the schedule
    assert [lr for row in lrs for lr in row] == pytest.approx([1e-2, 3e-2, 3e-2] * 2 + [1e-3, 3e-3, 3e-3] * 2)
    assert len(descriptors) == 2 and all((d < 1e-5).all() for d in descriptors)
    assert not torch.equal(out["model"].tail[0].weight, net.tail[0].weight)  # the tail trained
    assert torch.equal(net.state_dict()["tail.0.weight"], trained_pnet().state_dict()["tail.0.weight"])  # input kept
    assert all("joint_loss" in row and "joint_train_acc" in row for row in out["steps"])
    assert out["words_after"] == 6 - 2  # merges as without joint epochs


# ----------------------------------------------------------------------------- ProtoPShare: the curve


def test_curve_has_step_zero_and_one_point_per_merge_step():
    net = trained_pnet()
    feats, labels = tiny_data()
    val_feats, val_labels = tiny_data(9)
    split = {"train": (feats, labels), "val": (val_feats, val_labels)}
    ctx = SimpleNamespace(needed={"protopnet": Needed(Fitted(net), {"lvw": PNET})}, data=split.__getitem__,
                          settings={"protopshare": SHARE}, runtime=CPU, progress=False)
    rows = curve(ctx, 3, 10)
    assert [r["step"] for r in rows] == [0, 1, 2, 3]
    assert [r["words_after"] for r in rows] == [6, 5, 4, 3]  # 20 % of 6 words: 1 merge per step
    assert rows[0]["val_accuracy"] == ps._accuracy(net, val_feats, val_labels, "cpu")
    final = protopshare(net, feats, labels, ProtoPShareConfig(**{**SHARE.__dict__, "steps": 3}), PNET,
                        progress=False)["model"]
    assert rows[-1]["val_accuracy"] == ps._accuracy(final, val_feats, val_labels, "cpu")
    assert all(0 <= r["val_accuracy"] <= 1 for r in rows) and "pairs" not in rows[1]


def test_calibrate_curve_runs_once_per_named_variant(tmp_path, monkeypatch):
    # each variant names its schedule: the test holds whatever params/default.yaml's protopshare is
    (tmp_path / "v.yaml").write_text("variants:\n  a: {protopshare: {joint_epochs: 0}}\n"
                                     "  b: {protopshare: {joint_epochs: 5}}\n")
    seen = []

    def fake(params, dataset, method, seed, epochs, eval_every=10, progress=False):
        seen.append((params.get("protopshare", {}).get("joint_epochs", 0), dataset, method, epochs))
        return pd.DataFrame([{"step": 0, "val_accuracy": 0.5}])

    monkeypatch.setattr(calibrate, "training_curve", fake)
    argv = ["--curve", "protopshare", "--curve-epochs", "8", "--variants", str(tmp_path / "v.yaml"),
            "--only", "a", "b", "--out", str(tmp_path / "out")]
    assert calibrate.main(argv) == 0
    assert seen == [(0, "imagenette", "protopshare", 8), (5, "imagenette", "protopshare", 8)]
    table = pd.read_csv(tmp_path / "out" / "protopshare_curve.csv")
    assert table["variant"].tolist() == ["a", "b"]
    assert "merge steps" in (tmp_path / "out" / "protopshare_curve.md").read_text()
