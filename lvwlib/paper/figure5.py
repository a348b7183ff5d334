"""Figure 5: words on classes held out of training (``data.holdout_classes``), and the measured
check behind its claim: IoU coverage on unseen test images against seen ones (notebook 09)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import torch

from lvwlib.core.config import AnalysesConfig, UnseenCase
from lvwlib.experiment.models import TrainedModel
from lvwlib.experiment.names import absolute_dataset, results_name
from lvwlib.paper.analyses import per_image_eval, source_class_counts, source_labels, word_matches
from lvwlib.paper.figures import WordMatch


def unseen_case(analyses: AnalysesConfig, dataset: str | None = None,
                classes: list[str] | tuple[str, ...] | None = None) -> UnseenCase:
    """The case of Figure 5 that notebook 09 runs: ``dataset`` with ``classes`` held out.

    ``dataset`` None: the first of the params' cases (``analyses.unseen``); ``classes`` None: the
    held-out classes of the params' case of ``dataset`` (matched by results name, so a folder and
    a link to it agree). Raises ValueError when neither names them.
    """
    cases = analyses.unseen_cases()
    if dataset is None:
        if not cases:
            raise ValueError("no dataset given and the params' analyses.unseen has no case")
        dataset = cases[0].dataset
    if classes is not None:
        return UnseenCase(dataset, tuple(classes))
    wanted = results_name(absolute_dataset(dataset))
    for case in cases:
        if results_name(absolute_dataset(case.dataset)) == wanted:
            return UnseenCase(dataset, tuple(case.classes))
    raise ValueError(f"no held-out classes for {dataset!r}: the params' analyses.unseen names "
                     f"{[c.dataset for c in cases]}; pass heldout_classes")


def seen_unseen_rows(
    model: TrainedModel, prep: Any, base: Any, held: tuple[torch.Tensor, torch.Tensor], dataset: str,
) -> pd.DataFrame:
    """Per-image IoU coverage of ``model`` on the seen test images and on the held-out ones.

    Args:
        held: trunk features [Nh, 2, Ct, h, w] and Grad-CAM [Nh, 2, hc, wc] of the held-out
            test images (:func:`lvwlib.paper.analyses.heldout_artefacts`).
    Returns:
        columns dataset, method, seed, split ("seen" | "unseen"), image, iou.
    """
    ev = prep.exp.run.eval
    rows = []
    for split, feats, cams in (("seen", prep.test_feats, base.test_cams), ("unseen", *held)):
        out = per_image_eval(model, feats, cams, ev.quantile, ev.top_m, ev.eval_size)
        rows += [{"dataset": dataset, "method": model.label, "seed": model.seed, "split": split,
                  "image": i, "iou": float(v)} for i, v in enumerate(out["iou"])]
    return pd.DataFrame(rows)


def unseen_examples(
    model: TrainedModel, prep: Any, held_feats: torch.Tensor, held_names: list[str],
    human: Callable[[int], str], per_class: int = 2, top_words: int = 3,
) -> tuple[list[torch.Tensor], list[list[WordMatch]], list[str]]:
    """The rows of Figure 5: ``per_class`` held-out test images of each held-out class with their
    ``top_words`` most activated words beside the training patches the words come from.

    Returns:
        query images [3, S, S], their word matches, row titles.
    """
    held_labels = torch.tensor(prep.bundle.heldout.labels)
    scores = model.word_scores(held_feats[:, 0].float())  # [Nh, M]
    queries, matches, titles = [], [], []
    for h, name in enumerate(held_names):
        for i in torch.nonzero(held_labels == h).flatten()[:per_class].tolist():
            words = torch.topk(scores[i], top_words).indices.tolist()
            queries.append(prep.bundle.heldout[i][0])
            matches.append(word_matches(model, held_feats[i, 0], words, prep.bundle.train, prep.train_feats,
                                        prep.train_labels, human))
            titles.append(f"unseen: {name}")
    return queries, matches, titles


def unseen_source_counts(
    model: TrainedModel, prep: Any, held_feats: torch.Tensor, held_names: list[str], class_names: list[str],
) -> pd.DataFrame:
    """How often each seen class is the source of a held-out image's top-m words (m = eval.top_m).

    Returns:
        long table heldout_class, source_class, count.
    """
    scores = model.word_scores(held_feats[:, 0].float())  # [Nh, M]
    top = torch.topk(scores, min(prep.exp.run.eval.top_m, scores.shape[1]), dim=1).indices
    held_labels = torch.tensor(prep.bundle.heldout.labels)
    return source_class_counts(top, held_labels, source_labels(model.words.push, prep.train_labels),
                               held_names, class_names)
