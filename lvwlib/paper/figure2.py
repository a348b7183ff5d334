"""Figure 2: every method with words on one test image: (a) its top words beside their source
patches, (b) the base Grad-CAM and each method's combined top-m map with its IoU coverage.

The maps in (b) and their IoU are :func:`lvwlib.core.metrics.coverage` at the evaluation
size, the numbers Table 1 averages.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import torch

from lvwlib.core.metrics import coverage
from lvwlib.experiment.models import TrainedModel
from lvwlib.experiment.names import results_name
from lvwlib.methods import label
from lvwlib.paper.analyses import EVAL_BATCH, eval_batch, figure2_image, word_matches
from lvwlib.paper.figures import plot_figure2


@torch.no_grad()
def correct_by_method(prep: Any, base: Any, models: dict[str, TrainedModel]) -> torch.Tensor:
    """[1 + methods, Nt] bool: whether the base model, then each method, classifies each test image right."""
    x = prep.test_feats[:, 0].float()
    m = prep.exp.run.eval.top_m
    preds = [base.model(x).argmax(1), *(model.explain(x, m)[0].argmax(1) for model in models.values())]
    return torch.stack([p == prep.test_labels for p in preds])


def figure2(
    prep: Any, base: Any, models: dict[str, TrainedModel], title: str, human: Callable[[int], str],
    image_index: int | None = None, top_words: int = 3,
) -> tuple[plt.Figure, pd.DataFrame]:
    """Figure 2 of one dataset and its table of every word shown.

    Args:
        prep, base: the dataset's prepared data and the base model of the models' seed.
        models: method -> trained model with words, in display order.
        title: the figure's title (the test image is appended).
        human: class index -> readable name.
        image_index: the test image; None: the first one every method (and the base model)
            classifies correctly, else the one most get right (:func:`figure2_image`).
        top_words: words shown per method in (a).
    Returns:
        the figure, and one row per word shown: dataset, image, method, rank, word,
        source_image, source_class, predicted, iou.
    """
    i = figure2_image(correct_by_method(prep, base, models)) if image_index is None else int(image_index)
    ev = prep.exp.run.eval
    start, j = eval_batch(i)  # explained inside its Table 1 batch: the IoU shown is Table 1's for the image
    batch = prep.test_feats[start : start + EVAL_BATCH, 0].float()
    x = batch[j : j + 1]  # [1, Ct, h, w]
    cam = base.test_cams[i : i + 1, 0]
    matches, rows, maps, map_titles = [], [], [], []
    for method, model in models.items():
        logits, word_maps, _ = model.explain(batch, ev.top_m)
        logits, word_maps = logits[j : j + 1], word_maps[j : j + 1]
        shown = model.explain(batch, top_words)[2][j].tolist()  # its top words on this image
        matches.append(word_matches(model, x[0], shown, prep.bundle.train, prep.train_feats, prep.train_labels, human))
        cov = coverage(cam, word_maps.detach().float(), [ev.quantile], ev.eval_size)
        iou = float(cov.iou(ev.quantile)[0])
        if not maps:
            maps, map_titles = [cov.cam[0]], ["base Grad-CAM"]
        maps.append(cov.words[0])
        map_titles.append(f"{label(method)} (IoU {iou:.2f})")
        rows += [{"dataset": results_name(prep.exp.run.data.name), "image": i, "method": label(method), "rank": r,
                  "word": w, "source_image": model.words.push[w].image,
                  "source_class": human(int(prep.train_labels[model.words.push[w].image])),
                  "predicted": human(int(logits[0].argmax())), "iou": iou} for r, w in enumerate(shown)]
    truth = human(int(prep.test_labels[i]))
    fig = plot_figure2(prep.bundle.test[i][0], [label(m) for m in models], matches, maps, map_titles,
                       f"{title}: test image {i} ({truth})")
    return fig, pd.DataFrame(rows)
