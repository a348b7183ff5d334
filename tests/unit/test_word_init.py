"""LVW's optional word initialisation on class patches (lvw.word_init: patches)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lvwlib.core.model import PrototypeNet


def _net(num_classes: int = 3, words_per_class: int = 2) -> PrototypeNet:
    # identity tail and add-on, so a word placed on a patch equals that trunk cell (D = Ct = 4)
    net = PrototypeNet(nn.Identity(), 4, num_classes, words_per_class, 4, seed=0)
    net.add_on = nn.Identity()
    return net


def test_each_word_sits_on_a_cell_of_an_image_of_its_own_class():
    net = _net()
    labels = torch.tensor([0, 1, 2, 2, 1, 0])
    # image i holds 10 * class + i in every cell and channel: a word tells which image it came from
    trunk = torch.stack([torch.full((4, 2, 2), float(10 * int(c) + i)) for i, c in enumerate(labels)])
    net.init_words_on_patches(trunk, labels, seed=0)
    for j, word in enumerate(net.words):
        value = word[0].item()
        assert torch.all(word == value)  # one cell's channels, all equal here
        image = int(value) % 10
        assert labels[image] == j // 2  # word j belongs to class j // 2


def test_the_same_seed_gives_the_same_words_and_another_seed_other_ones():
    labels = torch.arange(3).repeat(5)
    trunk = torch.randn(15, 4, 3, 3)
    a, b, c = _net(), _net(), _net()
    a.init_words_on_patches(trunk, labels, seed=1)
    b.init_words_on_patches(trunk, labels, seed=1)
    c.init_words_on_patches(trunk, labels, seed=2)
    assert torch.equal(a.words, b.words) and not torch.equal(a.words, c.words)


def test_a_class_without_images_is_named():
    with pytest.raises(ValueError, match="class 2 has no training images"):
        _net().init_words_on_patches(torch.randn(2, 4, 2, 2), torch.tensor([0, 1]), seed=0)
