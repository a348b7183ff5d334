"""Table 1 and the SRAE table: long-format rows -> mean ± std summaries (csv and markdown)."""

from __future__ import annotations

from typing import Any

import pandas as pd

# The paper's published Table 1 (accuracy in %, IoU at q = 50), shown beside ours
# for context only. Our offline datasets stand in for the paper's as the shared
# datasets README says: imagenette -> STL10, imagewoof -> Stanford Dogs,
# flowers17 -> Oxford 102 Flowers. Base model = ResNet-34 there.
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
STAND_IN = {
    "imagenette": "STL10", "imagewoof": "Stanford-Dogs", "flowers17": "Oxford Flower",
    "stl10": "STL10", "stanford_dogs": "Stanford-Dogs", "flowers102": "Oxford Flower",
    "pets": "Oxford-IIIT Pets", "food101": "Food-101", "awa2": "AWA2",
}
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


def _pm(mean: float, std: float, scale: float, digits: int) -> str:
    if pd.isna(mean):
        return "–"
    std = 0.0 if pd.isna(std) else std
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


def table1_markdown(summary: pd.DataFrame) -> str:
    """Markdown Table 1: ours (mean ± std over seeds), one heading per dataset.

    A dataset that stands in for one of the paper's benchmarks (:data:`STAND_IN`) gets the
    paper's published numbers beside ours; any other (a user's folder) gets none, and says so.
    """
    parts = []
    for dataset, block in summary.groupby("dataset", sort=False):
        paper_name = STAND_IN.get(dataset)
        paper = PAPER_TABLE1.get(paper_name, {}) if paper_name else {}
        rows = []
        block = block.set_index("method")
        for method in [m for m in ROW_ORDER if m in block.index]:
            r = block.loc[method]
            row = {
                "method": method,
                "accuracy % (ours)": _pm(r["accuracy_mean"], r["accuracy_std"], 100, 2),
                "IoU q=50 (ours)": _pm(r["iou_mean"], r["iou_std"], 1, 4),
                "seeds": int(r["iou_count"]),
            }
            if paper_name:
                p = paper.get(method)
                row[f"accuracy % (paper, {paper_name})"] = f"{p[0]:.2f}" if p else "–"
                row[f"IoU (paper, {paper_name})"] = f"{p[1]:.4f}" if p else "–"
            rows.append(row)
        note = "" if paper_name else "\nNo paper number: the paper has no benchmark this dataset stands in for.\n"
        parts.append(f"### {dataset}\n\n" + pd.DataFrame(rows).to_markdown(index=False) + "\n" + note)
    return "\n".join(parts) + FOOTNOTES


FOOTNOTES = """
Notes: IoU coverage is Eq. 6 at q = 50 (high-attention regions), top m = 10 words,
against the base model's Grad-CAM. Base + Grad-CAM's IoU is computed against its own
maps (1 by construction). SRAE is a post-hoc explanation module of the base model: its
accuracy column is the base model's (the predictions it explains); its fidelity is
F_cls in `srae_table.md`, and its map is built from Grad-CAM of its x-features, i.e. a
decomposition of the base model's own attention. Random map: the IoU of i.i.d. uniform
noise maps against the same Grad-CAM (chance level, ~1/3 at q = 50). ProtoTree's words are the prototypes
on each image's greedy path. The paper's columns are its published Table 1 for the
benchmark our dataset stands in for (ResNet-34 there, EfficientNet-Lite0 here).
"""

