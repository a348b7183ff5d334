"""The streaming path (``tail: all``, images through DataLoader workers) on tiny data, one process."""

from __future__ import annotations

import json

import torch

from lvwlib.backbones.split import build_backbone
from lvwlib.core.config import load_params
from lvwlib.core.model import PrototypeNet
from lvwlib.core.streaming import StreamingSource
from lvwlib.data import load_dataset
from lvwlib.experiment.config import experiment_from_params
from lvwlib.experiment.launch import main
from lvwlib.experiment.models import load_model
from lvwlib.store.paths import resolve


def test_streaming_tail_all_trains_pushes_and_evaluates(tmp_path):
    out = tmp_path / "rows.json"
    args = ["--params", str(resolve("params/tiny.yaml")), "--dataset", "synthetic", "--methods", "base,lvw",
            "--out", str(out), "--set", f"cache_dir={tmp_path / 'cache'}", "--set", "backbone.tail=all",
            "--set", "device=cpu"]
    main(args)
    rows = {r["method"]: r for r in json.loads(out.read_text())["rows"]}
    assert rows["base"]["iou"] == 1.0  # the base model explained by its own Grad-CAM
    lvw = rows["lvw"]
    assert 0.0 <= lvw["accuracy"] <= 1.0 and 0.0 <= lvw["iou"] <= 1.0
    assert [h["stage"] for h in lvw["history"]] == ["warm", "joint", "last_layer", "joint", "last_layer"]
    assert "align" in lvw["history"][1]  # the alignment loss ran on the cached maps

    # Grad-CAM maps are cached at the tail's 4 x 4 resolution (32 px / 8), not as 32 x 32 images.
    (cam_file,) = (tmp_path / "cache" / "gradcam").glob("*.pt")
    maps = torch.load(cam_file, weights_only=False)
    assert maps["train"].shape[1:] == (2, 4, 4) and maps["test"].shape[1:] == (2, 4, 4)

    # Each word after the last push is the latent patch it was pushed onto (streamed push):
    # rebuild the network from its checkpoint and recompute the patches from the images.
    tiny = load_params(resolve("params/tiny.yaml"))
    exp = experiment_from_params({**tiny, "cache_dir": str(tmp_path / "cache"), "device": "cpu",
                                  "backbone": {**tiny["backbone"], "tail": "all"}}, "synthetic")
    bundle = load_dataset(exp.run.data)
    backbone = build_backbone(exp.run.backbone)
    net = PrototypeNet(backbone.tail, backbone.feature_channels, 3, words_per_class=2, feature_dim=8)
    (ckpt,) = (tmp_path / "cache" / "models").glob("*.pt")
    net.load_state_dict(torch.load(ckpt, weights_only=False)["model"])
    words = load_model(exp, "synthetic", "lvw").module.words.detach()  # the streamed run's stored model
    assert torch.equal(words, net.words.detach())
    source = StreamingSource(bundle.train, backbone.trunk)
    latents = torch.cat([net.latent(b.x).detach() for b in source.ordered_batches(8, (0,))])  # [N, D, h, w]
    for r in lvw["push"]:
        patch = latents[r["image"], :, r["row"], r["col"]]
        assert torch.allclose(words[r["word"]], patch, atol=1e-6)

    # A second run finds every artefact (base model, maps, checkpoint) and gives the same rows.
    out2 = tmp_path / "rows2.json"
    main([str(out2) if a == str(out) else a for a in args])
    assert json.loads(out2.read_text())["rows"] == json.loads(out.read_text())["rows"]
