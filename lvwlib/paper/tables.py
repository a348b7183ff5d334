"""Table 1 and the SRAE table: long-format rows -> mean ± std summaries (csv and markdown)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

# The paper's published Table 1 (accuracy in %, IoU at q = 50), shown beside ours
# for context only (the paper's Table 1, /work/shared/papers/lvw-learnable-visual-words.md; the
# "Base + Grad-CAM" row is its ResNet-34 row, "LVW w/o alignment" its "Ours w/o Atte. Align.").
# Our offline datasets stand in for the paper's (:data:`STAND_IN`); flowers102 is the paper's own.
PAPER_TABLE1: dict[str, dict[str, tuple[float, float]]] = {
    "STL10": {
        "Base + Grad-CAM": (87.40, 1.00), "ProtoPNet": (86.33, 0.2199), "ProtoTree": (89.58, 0.3228),
        "ProtoPShare": (87.04, 0.2722), "LVW w/o alignment": (89.55, 0.2209), "LVW": (89.75, 0.6465),
    },
    "Oxford Flower": {
        "Base + Grad-CAM": (98.17, 1.00), "ProtoPNet": (86.33, 0.3081), "ProtoTree": (30.44, 0.3418),
        "ProtoPShare": (87.04, 0.2958), "LVW w/o alignment": (89.85, 0.3722), "LVW": (91.81, 0.7967),
    },
    "Oxford-IIIT Pets": {
        "Base + Grad-CAM": (92.28, 1.00), "ProtoPNet": (82.12, 0.2190), "ProtoTree": (62.41, 0.5113),
        "ProtoPShare": (74.70, 0.3467), "LVW w/o alignment": (85.47, 0.2583), "LVW": (86.20, 0.8086),
    },
    "Stanford-Dogs": {
        "Base + Grad-CAM": (79.03, 1.00), "ProtoPNet": (69.27, 0.4337), "ProtoTree": (41.00, 0.4267),
        "ProtoPShare": (68.70, 0.4585), "LVW w/o alignment": (70.72, 0.2748), "LVW": (73.81, 0.7932),
    },
    "Food-101": {
        "Base + Grad-CAM": (81.60, 1.00), "ProtoPNet": (74.93, 0.4135), "ProtoTree": (36.37, 0.4173),
        "ProtoPShare": (72.37, 0.4826), "LVW w/o alignment": (75.03, 0.3128), "LVW": (76.33, 0.6969),
    },
    "AWA2": {
        "Base + Grad-CAM": (93.66, 1.00), "ProtoPNet": (89.18, 0.2294), "ProtoTree": (86.54, 0.6197),
        "ProtoPShare": (84.10, 0.2571), "LVW w/o alignment": (91.16, 0.2536), "LVW": (90.85, 0.7781),
    },
}
# The paper's benchmark each dataset stands in for (or is: the paper's own sets by their registry
# names, and flowers102, the real Oxford 102 Flowers with its official split). flowers17 stands in
# for none: it is for quick runs and the classroom, and gets a column of its own when run.
STAND_IN = {
    "imagenette": "STL10", "imagewoof": "Stanford-Dogs", "food101_10": "Food-101", "animals22": "AWA2",
    "stl10": "STL10", "stanford_dogs": "Stanford-Dogs", "flowers102": "Oxford Flower",
    "pets": "Oxford-IIIT Pets", "food101": "Food-101", "awa2": "AWA2",
}
# The paper's Table 1 columns in its order, each with the dataset `make reproduce` runs for it
# (None: no offline data exists for it).
PAPER_COLUMNS: list[tuple[str, str | None]] = [
    ("STL10", "imagenette"), ("Oxford Flower", "flowers102"), ("Oxford-IIIT Pets", None),
    ("Stanford-Dogs", "imagewoof"), ("Food-101", "food101_10"), ("AWA2", "animals22"),
]
NO_OFFLINE_DATA = "no offline data"
NOT_RUN = "not run"
# One sentence per column on how our data differs from the paper's (every column: EfficientNet-Lite0
# with a cached trunk instead of ResNet-34, and shorter training; see the notes under the table).
DIFFERENCES = {
    "imagenette": "Imagenette (10 easy ImageNet classes at 224 px) stands in for STL10 (10 classes at 96 px): "
                  "other images of a similar task, capped per class.",
    "flowers102": "The same data and official split as the paper (train on the official training set, test on "
                  "its validation set); only the backbone, the training budget and LVW's words (ours start on "
                  "class patches, docs/choices.md) differ.",
    "imagewoof": "Imagewoof (10 dog breeds of ImageNet) stands in for Stanford Dogs (120 breeds): a 10-class "
                 "subset-like stand-in, capped per class.",
    "food101_10": "Real Food-101 photos, but 10 of its 101 classes (150 training / 50 test images each): a subset.",
    "animals22": "22 animal species in web photos stand in for AwA2's 50 classes: a stand-in with other images.",
    "pets": "The paper's dataset itself (torchvision's copy and split).",
    "stl10": "The paper's dataset itself (torchvision's copy and split).",
    "stanford_dogs": "The paper's dataset itself (official lists).",
    "food101": "The paper's dataset itself (torchvision's copy and split).",
    "awa2": "The paper's dataset itself (its own class folders, split here).",
}
# Datasets that are the paper's own data with its split (not a stand-in): compared number by number.
SAME_DATA = ("flowers102", "stl10", "pets", "stanford_dogs", "food101", "awa2")
NO_DATA_NOTE = ("No offline copy of Oxford-IIIT Pets exists for this project (it needs a download): "
                "not run, the paper's numbers alone.")
# "Random map": uniform noise against the same Grad-CAM, the metric's chance level (no accuracy).
ROW_ORDER = ["Base + Grad-CAM", "ProtoPNet", "ProtoTree", "ProtoPShare", "LVW w/o alignment", "LVW", "SRAE", "Random map"]


def long_rows(dataset: str, results: list[dict[str, Any]], labels: dict[str, str]) -> pd.DataFrame:
    """Long format: one row per (dataset, method, seed) with test accuracy and IoU (q = 50).

    ``val_accuracy`` / ``val_iou`` (the validation split, used for every choice of
    defaults) are added when the results have them.
    """
    return pd.DataFrame(
        [
            {"dataset": dataset, "method": labels[r["method"]], "seed": r["seed"],
             "accuracy": r["accuracy"], "iou": r["iou"],
             **({"val_accuracy": r["val"]["accuracy"], "val_iou": r["val"]["iou"]} if "val" in r else {})}
            for r in results
        ]
    )


def summarise(long: pd.DataFrame, columns: tuple[str, ...] = ("accuracy", "iou")) -> pd.DataFrame:
    """Mean, std and count over seeds per (dataset, method)."""
    grouped = long.groupby(["dataset", "method"], sort=False)[list(columns)]
    out = grouped.agg(["mean", "std", "count"])
    out.columns = [f"{c}_{s}" for c, s in out.columns]
    return out.reset_index()


def mean_sd_cells(means: Any, sds: Any, digits: int = 3) -> list[str]:
    """One ``"mean ± sd"`` cell per pair: ``–`` for a missing mean, the mean alone when the sd is missing
    (one seed). The cells of every summary table but Table 1's (which always shows an sd)."""
    return [("–" if pd.isna(m) else f"{m:.{digits}f}" + ("" if pd.isna(sd) else f" ± {sd:.{digits}f}"))
            for m, sd in zip(means, sds, strict=True)]


def _pm(mean: float, std: float, scale: float, digits: int) -> str:
    if pd.isna(mean):
        return "–"
    std = 0.0 if pd.isna(std) else std
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


@dataclass(frozen=True)
class Column:
    """One column of Table 1: a paper benchmark with our dataset for it, or a dataset of our own."""

    dataset: str | None  # results name of the dataset shown (None: no offline data for it)
    paper: str | None  # the paper's benchmark (None: a dataset the paper does not have)
    run: bool  # whether this run has results for ``dataset``

    @property
    def header(self) -> str:
        if self.paper is None:
            return f"{self.dataset} (ours only)"
        if self.dataset is None:
            return f"{self.paper} ({NO_OFFLINE_DATA})"
        return f"{self.paper} (ours: {self.dataset})"

    @property
    def missing(self) -> str:
        """What a cell of a column without results says."""
        return NO_OFFLINE_DATA if self.dataset is None else NOT_RUN

    @property
    def note(self) -> str:
        if self.dataset is None:
            return NO_DATA_NOTE
        known = DIFFERENCES.get(self.dataset)
        if self.paper is None:
            return known or "A dataset of your own: the paper has no benchmark it stands in for, so no paper number."
        text = known or f"Stands in for {self.paper}."
        return text if self.run else f"{text} Not in this run."


def table1_columns(datasets: list[str]) -> list[Column]:
    """The columns of Table 1: the paper's six in its order, then the run's other datasets in their order.

    A paper column shows the first dataset of the run that stands in for it (:data:`STAND_IN`), else
    the one ``make reproduce`` runs for it, marked as not run (or as having no offline data).
    """
    columns, used = [], set()
    for paper, default in PAPER_COLUMNS:
        found = next((d for d in datasets if STAND_IN.get(d) == paper and d not in used), None)
        if found is not None:
            used.add(found)
            columns.append(Column(found, paper, True))
        else:
            columns.append(Column(default, paper, False))
    return columns + [Column(d, None, True) for d in datasets if d not in used]


def _cell(block: pd.DataFrame | None, method: str, column: Column, measure: str, paper: dict) -> str:
    """One cell: ours (mean ± std over seeds), with the paper's number after a middle dot."""
    scale, digits, paper_digits = (100, 2, 2) if measure == "accuracy" else (1, 4, 4)
    p = paper.get(method)
    theirs = "–" if p is None else f"{p[0 if measure == 'accuracy' else 1]:.{paper_digits}f}"
    if block is None or method not in block.index:
        ours = column.missing if block is None else "–"
    else:
        r = block.loc[method]
        ours = _pm(r[f"{measure}_mean"], r[f"{measure}_std"], scale, digits)
    return ours if column.paper is None else f"{ours} · paper {theirs}"


def _seeds(block: pd.DataFrame | None, column: Column) -> str:
    if block is None:
        return column.missing
    counts = sorted({int(c) for c in block["iou_count"]})
    return str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"


def table1_markdown(summary: pd.DataFrame) -> str:
    """Markdown Table 1 in the paper's column order (:func:`table1_columns`): accuracy, then IoU.

    Each cell is ours (mean ± std over seeds) followed by the paper's published number for the
    benchmark the column's dataset stands in for; columns of the paper not in this run say so,
    a dataset of the user's own gets a column of ours only. One sentence per column says how
    ours differs from the paper's.
    """
    blocks = {d: b.set_index("method") for d, b in summary.groupby("dataset", sort=False)}
    columns = table1_columns(list(blocks))
    methods = [m for m in ROW_ORDER if any(m in b.index for b in blocks.values())] or ROW_ORDER
    parts = []
    for measure, title in (("accuracy", "Accuracy (%)"), ("iou", "IoU coverage (q = 50)")):
        rows = []
        for method in methods:
            row = {"method": method}
            for col in columns:
                paper = PAPER_TABLE1.get(col.paper, {}) if col.paper else {}
                row[col.header] = _cell(blocks.get(col.dataset) if col.run else None, method, col, measure, paper)
            rows.append(row)
        rows.append({"method": "seeds", **{c.header: _seeds(blocks.get(c.dataset) if c.run else None, c)
                                             for c in columns}})
        parts.append(f"### {title}: ours (mean ± std over seeds) · paper\n\n"
                     + pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True) + "\n")
    notes = "\n".join(f"- **{c.header}**: {c.note}" for c in columns)
    return "\n".join(parts) + "\n### How each column differs from the paper's\n\n" + notes + "\n" + FOOTNOTES


def paper_comparison(summary: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Every row of Table 1 of ``dataset`` number by number against the paper's column for it.

    Columns: method, paper accuracy %, ours (mean over seeds, %), difference (points), paper IoU,
    ours, difference; rows in :data:`ROW_ORDER` that either side has (nan where one has none).
    """
    paper = PAPER_TABLE1.get(STAND_IN.get(dataset, ""), {})
    block = summary[summary["dataset"] == dataset].set_index("method")
    rows = []
    for method in [m for m in ROW_ORDER if m in paper or m in block.index]:
        p_acc, p_iou = paper.get(method, (float("nan"), float("nan")))
        ours_acc = block.loc[method, "accuracy_mean"] * 100 if method in block.index else float("nan")
        ours_iou = block.loc[method, "iou_mean"] if method in block.index else float("nan")
        rows.append({"method": method, "paper accuracy %": p_acc, "ours accuracy %": ours_acc,
                     "difference (points)": ours_acc - p_acc, "paper IoU": p_iou, "ours IoU": ours_iou,
                     "difference (IoU)": ours_iou - p_iou})
    return pd.DataFrame(rows)


FOOTNOTES = """
Notes: IoU coverage is Eq. 6 at q = 50 (high-attention regions), top m = 10 words,
against the base model's Grad-CAM. Base + Grad-CAM's IoU is computed against its own
maps (1 by construction). SRAE is a post-hoc explanation module of the base model: its
accuracy column is the base model's (the predictions it explains); its fidelity is
F_cls in `srae_table.md`, and its map is built from Grad-CAM of its x-features, i.e. a
decomposition of the base model's own attention. Random map: the IoU of i.i.d. uniform
noise maps against the same Grad-CAM (chance level, ~1/3 at q = 50). ProtoTree's words are the prototypes
on each image's greedy path. "paper": the paper's published Table 1 for the benchmark of the
column (ResNet-34 there, EfficientNet-Lite0 with shorter training here); its ProtoPNet and
ProtoPShare accuracies on Oxford Flower repeat its STL10 ones (86.33, 87.04), as printed.
"""

