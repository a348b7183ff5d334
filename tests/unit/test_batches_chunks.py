"""inference_in_chunks: CPU passes of at most CPU_INFERENCE_CHUNK images outside training, else one pass."""

from __future__ import annotations

import torch
from torch import nn

from lvwlib.core.base_model import BaseModel
from lvwlib.core.batches import inference_in_chunks
from lvwlib.core.model import PrototypeNet


class Recorder(nn.Module):
    """Doubles its input and records the batch size of every call."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(x.shape[0])
        return 2 * x


def test_split_only_without_autograd_and_training():
    rec = Recorder().eval()
    x = torch.arange(10.0).view(10, 1)
    with torch.no_grad():
        out = inference_in_chunks(rec, x, (rec,), chunk=4)
    assert rec.sizes == [4, 4, 2]
    assert torch.equal(out, 2 * x)

    rec.sizes.clear()  # autograd on (Grad-CAM's hooks must see the whole batch): one pass
    inference_in_chunks(rec, x, (rec,), chunk=4)
    assert rec.sizes == [10]

    rec.sizes.clear()  # a module in training mode (batch norm's batch statistics): one pass
    rec.train()
    with torch.no_grad():
        inference_in_chunks(rec, x, (rec,), chunk=4)
    assert rec.sizes == [10]

    rec.sizes.clear()  # no more images than a chunk: one pass
    rec.eval()
    with torch.no_grad():
        inference_in_chunks(rec, x, (rec,), chunk=10)
    assert rec.sizes == [10]


def _tail() -> nn.Module:
    torch.manual_seed(0)
    tail = nn.Sequential(nn.Conv2d(8, 16, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6())
    tail[1].running_mean.normal_()
    tail[1].running_var.uniform_(0.5, 2.0)
    return tail


def test_models_give_the_one_pass_output_in_chunks():
    """A prototype network's latent and a base model's logits over 150 images: chunked (eval,
    no grad) against one pass of the same modules (grad on), equal up to float rounding."""
    x = torch.randn(150, 8, 3, 3)
    net = PrototypeNet(_tail(), 16, 3, words_per_class=2, feature_dim=4).eval()
    base = BaseModel(_tail(), 16, 3).eval()
    with torch.no_grad():
        z_chunks, logits_chunks = net.latent(x), base(x)
    z_one, logits_one = net.latent(x).detach(), base(x).detach()
    torch.testing.assert_close(z_chunks, z_one, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logits_chunks, logits_one, rtol=1e-5, atol=1e-6)


def test_training_mode_keeps_batch_statistics_of_the_whole_batch():
    """In train mode batch norm normalises by the whole batch's statistics: no split, even without grad."""
    x = torch.randn(150, 8, 3, 3)
    net = PrototypeNet(_tail(), 16, 3, words_per_class=2, feature_dim=4).train()
    with torch.no_grad():
        z = net.latent(x)
        expected = net.add_on(net.tail(x))
    torch.testing.assert_close(z, expected, rtol=0, atol=0)
