"""The word gallery: every word of a trained model as the training patch it was pushed onto,
sorted by the class it serves (notebook 08)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import torch

from lvwlib.core.maps import upsample_map
from lvwlib.experiment.models import TrainedModel
from lvwlib.paper.analyses import most_used_words, source_labels
from lvwlib.paper.viz import plot_word_sources, save_figure
from lvwlib.store.records import write_text

THUMB = 112  # side at which each gallery photo is drawn (the box is found at full size)


def served_classes(model: TrainedModel, word_labels: torch.Tensor) -> list[int]:
    """The class each word serves most: its largest last-layer weight; without class weights
    (ProtoTree: words route, leaves vote) the class of its source image."""
    if model.words is not None and model.words.class_weights is not None:
        return model.words.class_weights.argmax(dim=0).tolist()
    return word_labels.tolist()


@torch.no_grad()
def word_gallery(
    model: TrainedModel, prep: Any, names: list[str], max_words: int = 100
) -> tuple[plt.Figure, pd.DataFrame]:
    """The gallery of ``model``'s words and one row per word shown.

    Args:
        model: a trained model with words; prep: its dataset's prepared data.
        names: readable class names, in label order.
        max_words: a model with more words (ProtoTree: 1,023) shows the ``max_words`` most
            used among the test images' top-m words (:func:`most_used_words`).
    Returns:
        the figure, and rows method, word, serves, source_class, source_image.
    """
    if model.words is None:
        raise ValueError(f"{model.method} has no words to show")
    push = model.words.push
    src_label = source_labels(push, prep.train_labels).tolist()
    serves = served_classes(model, torch.tensor(src_label))
    shown = list(range(len(push)))
    if len(push) > max_words:  # rank by use on the test set only when some must be left out
        top = model.explain(prep.test_feats[:, 0].float(), prep.exp.run.eval.top_m)[2]
        shown = most_used_words(top, len(push), max_words)
    order = sorted(shown, key=lambda j: (serves[j], j))
    images, acts, titles, rows = [], [], [], []
    for j in order:
        image = prep.bundle.train[push[j].image][0]
        act = model.word_maps(prep.train_feats[push[j].image, 0][None].float())[0, j]  # push scans unflipped images
        images.append(image)
        acts.append(upsample_map(act, image.shape[-1]))
        titles.append(f"w{j} → {names[serves[j]]}\nfrom {names[src_label[j]]}")
        rows.append({"method": model.label, "word": j, "serves": names[serves[j]],
                     "source_class": names[src_label[j]], "source_image": push[j].image})
    fig = plot_word_sources(images, acts, titles, ncols=min(10, len(images)), thumb=THUMB)
    which = "every word" if len(shown) == len(push) else f"the {len(shown)} of {len(push)} words most used on test images"
    fig.suptitle(f"{model.label}: {which}, sorted by the class it serves",
                 y=1 + 0.4 / fig.get_figheight())
    return fig, pd.DataFrame(rows)


def shared_fraction(gallery: pd.DataFrame) -> pd.Series:
    """Per method: the fraction of words serving another class than their source image's."""
    shared = gallery.assign(shared=gallery["serves"] != gallery["source_class"])
    return shared.groupby("method")["shared"].mean().rename("fraction of words serving another class than their source")


def write_word_galleries(
    models: dict[str, TrainedModel], prep: Any, names: list[str], out_dir: Path, max_words: int = 100
) -> pd.DataFrame:
    """One gallery per model (``word_gallery_<method>.png``, palette PNG) and ``word_gallery.csv``.

    Only the first gallery stays open (shown inline); the others are only saved, which keeps
    an executed notebook small. Returns the rows of every gallery.
    """
    tables = []
    for n, (method, model) in enumerate(models.items()):
        fig, rows = word_gallery(model, prep, names, max_words)
        # photos only: a palette PNG, no PDF (in vector form it would only wrap the same ~100 rasters, >2 MB)
        save_figure(fig, out_dir / f"word_gallery_{method}", formats=("png",), palette=True)
        if n:
            plt.close(fig)
        tables.append(rows)
    gallery = pd.concat(tables, ignore_index=True)
    write_text(out_dir / "word_gallery.csv", gallery.to_csv(index=False))
    return gallery
