"""The report's catalogue of figures and tables (``results/README.md``, notebook 10).

The claims table and its verdict rule are in :mod:`lvwlib.paper.claims`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from lvwlib.core.config import BackboneConfig, to_dict
from lvwlib.paper.claims import VERDICT_RULE
from lvwlib.paper.tables import SAME_DATA, STAND_IN, paper_comparison, summarise

# Every figure of the report: (file stem under results_dir, with {dataset} for per-dataset
# figures; one-line caption; the paper's counterpart). Captions say what is drawn, never a result.
FIGURES: list[tuple[str, str, str]] = [
    ("{dataset}/figure2", "One test image: each method's top 3 words boxed on it beside their source "
     "training patches (a); base Grad-CAM and each method's combined top-m map with its IoU (b).", "Figure 2"),
    ("{dataset}/figure3a_k_sweep", "Accuracy and IoU coverage of LVW for each k (top words in the alignment "
     "loss); mean ± sd over 3 random test halves.", "Figure 3(a)"),
    ("iou_vs_quantile", "IoU coverage vs quantile threshold q, one panel per dataset in Table 1's column order; "
     "top row the paper's high-region "
     "IoU, bottom row the reference code's low-region variant; dashed: a uniform-noise map (chance).",
     "Figure 3(b-f)"),
    ("{dataset}/figure4a_class_correlation", "Pearson correlation between classes' mean word-score vectors "
     "(training images).", "Figure 4(a)"),
    ("{dataset}/figure4bc_word_pairs", "Mean word-score vectors of the most and the least correlated class "
     "pair, chosen by the data.", "Figure 4(b, c)"),
    ("{dataset}/figure5_unseen_words", "Held-out (unseen) test images with their top LVW words beside the "
     "training patches the words come from.", "Figure 5"),
    ("{dataset}/figure5_source_classes", "Source classes of the top words of held-out test images, per "
     "held-out class.", "Figure 5 (measured, not in the paper)"),
    ("{dataset}/figure5_seen_vs_unseen_iou", "IoU coverage of LVW and ProtoPNet on seen vs unseen test "
     "images; mean ± sd over seeds.", "none (measured for Figure 5's claim)"),
    ("{dataset}/word_gallery_lvw", "Every LVW word as its source training patch, sorted by the class it "
     "serves.", "none (gallery)"),
    ("{dataset}/word_gallery_protopnet", "Every ProtoPNet prototype as its source patch, sorted by class.",
     "none (gallery)"),
    ("{dataset}/word_gallery_protopshare", "Every ProtoPShare prototype (after merging) as its source patch.",
     "none (gallery)"),
    ("{dataset}/word_gallery_prototree", "ProtoTree node prototypes as source patches: of its 1,023, the 100 most "
     "used on test images (08's gallery_max_words).", "none (gallery)"),
    ("{dataset}/lvw_attention_examples", "Base Grad-CAM and the combined word maps of LVW with and without "
     "alignment on example test images.", "Figure 2(b), more images"),
    ("{dataset}/lvw_words", "LVW words as their source training patches (notebook 02).", "Figure 2(a)"),
    ("{dataset}/gradcam_examples", "Base model Grad-CAM on example test images.", "Figure 1"),
    ("border_mean_maps_before_trunk_change", "Each method's mean map over the test set (max of its top-m maps "
     "per image, min-max scaled, averaged; mean over seeds), per dataset, with the frozen zero-padded trunk.",
     "none (border diagnostic, notebook 11)"),
    ("border_mean_maps_after_trunk_change", "The same mean maps after the trunk change.",
     "none (border diagnostic, notebook 11)"),
    ("faithfulness_curves", "Deletion (top) and insertion (bottom) curves of every row's own map on its own "
     "model, whole model re-run; mean over the image subset and seeds; dashed: a random map.",
     "none (faithfulness, notebook 11)"),
]
TABLES: list[tuple[str, str, str]] = [
    ("table1", "Accuracy and IoU coverage (q = 50) of every method in the paper's column order, mean ± sd over "
     "seeds beside the paper's numbers, with a random-map row (chance level).", "Table 1"),
    ("srae_table", "SRAE's faithfulness and orthogonality.", "Table 2"),
    ("prototree_table", "ProtoTree's soft, sample_max and greedy test accuracy after pruning and projection, "
     "their fidelity to the soft tree, near-uniform leaves; which one Table 1 reports.", "none"),
    ("iou_paper_vs_reference", "IoU coverage by the paper's definition vs the reference code's variant.",
     "none"),
    ("random_map", "IoU of uniform-noise maps against Grad-CAM at every q, both variants.", "none"),
    ("border_diagnostic_before_trunk_change", "Border share of push locations and of map peaks vs chance "
     "(24/49), IoU before and after subtracting each method's mean map; frozen zero-padded trunk.", "none"),
    ("border_diagnostic_after_trunk_change", "The border diagnostic after the trunk change.", "none"),
    ("faithfulness", "Deletion / insertion AUC of every row's own map with the whole model re-run; mean ± sd "
     "over seeds.", "none"),
]


def figure_rows(results_dir: Path, datasets: list[str]) -> list[dict[str, str]]:
    """The figures that exist under ``results_dir``: path (relative, PNG), caption, paper counterpart."""
    rows = []
    for stem, caption, paper in FIGURES:
        stems = [stem.format(dataset=d) for d in datasets] if "{dataset}" in stem else [stem]
        for s in stems:
            if (results_dir / f"{s}.png").exists():
                pdf = f" ([pdf]({s}.pdf))" if (results_dir / f"{s}.pdf").exists() else ""  # galleries: PNG only
                rows.append({"figure": f"[{s}.png]({s}.png){pdf}", "caption": caption, "paper": paper})
    return rows


# --------------------------------------------------------------------------- writing the report

NOT_DATASETS = {"notebooks", "calibration", "screenshots"}  # folders of a results folder that hold no dataset
TABLE_CSVS = (("k_sweep", "Accuracy and IoU of LVW per k and test half.", "Figure 3(a)"),
              ("unseen_iou", "Per-image IoU on seen and unseen test images.", "Figure 5"))


@dataclass
class Results:
    """The CSVs of a results folder that the claims read (None: the notebook behind it did not run)."""

    root: Path
    datasets: list[str]  # sub-folders holding a dataset's results (results names)
    table1: pd.DataFrame | None
    sweep: pd.DataFrame | None  # IoU vs q, the paper's variant only
    ksweep: pd.DataFrame | None
    pairs: pd.DataFrame | None
    unseen: pd.DataFrame | None
    faithfulness: pd.DataFrame | None = None  # per-image deletion / insertion AUCs (notebook 11)
    border: pd.DataFrame | None = None  # border diagnostic per seed, every stage (notebook 11)
    trunk_calibration: pd.DataFrame | None = None  # trunk calibration rows, validation (calibration/trunk)
    trunk_variants: dict[str, Any] | None = None  # their variants' overrides (the calibration's run record)

    def counts(self) -> dict[str, int | None]:
        """Rows of each table (None: missing)."""
        tables = {"table1": self.table1, "sweep": self.sweep, "ksweep": self.ksweep, "pairs": self.pairs,
                  "unseen": self.unseen}
        return {name: None if t is None else len(t) for name, t in tables.items()}


def read_results(root: Path) -> Results:
    """Every CSV behind the claims under ``root`` (top level and each dataset's folder)."""
    datasets = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name not in NOT_DATASETS)

    def read(name: str) -> pd.DataFrame | None:
        return pd.read_csv(root / name) if (root / name).exists() else None

    def read_all(name: str) -> pd.DataFrame | None:
        parts = [pd.read_csv(root / d / name) for d in datasets if (root / d / name).exists()]
        return pd.concat(parts, ignore_index=True) if parts else None

    sweep = read("iou_vs_quantile.csv")
    if sweep is not None and "variant" in sweep:
        sweep = sweep[sweep["variant"] == "paper"]
    stages = [pd.read_csv(p) for p in sorted(root.glob("border_diagnostic_*_seeds.csv"))]
    return Results(root, datasets, read("table1.csv"), sweep, read_all("k_sweep.csv"), read_all("class_pairs.csv"),
                   read_all("unseen_iou.csv"), read("faithfulness_images.csv"),
                   pd.concat(stages, ignore_index=True) if stages else None, *read_trunk_calibration(root))


def read_trunk_calibration(root: Path) -> tuple[pd.DataFrame | None, dict[str, Any] | None]:
    """The per-seed rows of the trunk calibration under ``root/calibration/trunk`` (None: not run; only
    files that carry the border diagnostic) and its variants' overrides (None: no run record).

    Later runs (another seed, dataset or set of rows) live in subfolders, each with its own run record:
    their rows join the top folder's, a (dataset, variant, method, seed) row measured twice (the base
    row every run records) counts once, the shallower file's; their variants join the top record's.
    """
    from lvwlib.paper.border import TRUNK_CALIBRATION

    folder = root / TRUNK_CALIBRATION

    def shallow_first(path: Path) -> tuple[int, str]:
        return len(path.relative_to(folder).parts), str(path)

    parts = [pd.read_csv(p) for p in sorted(folder.rglob("calibration_*.csv"), key=shallow_first)]
    parts = [p for p in parts if "peak_border" in p.columns]
    variants: dict[str, Any] | None = None
    for record in sorted(folder.rglob("run_calibration.json"), key=shallow_first):
        found = json.loads(record.read_text()).get("config", {}).get("variants") or {}
        variants = {**found, **(variants or {})}  # the shallower record's overrides win
    if not parts:
        return None, variants
    rows = pd.concat(parts, ignore_index=True).drop_duplicates(["dataset", "variant", "method", "seed"], keep="first")
    return rows.reset_index(drop=True), variants


def measured_sections(results: Results, backbone: BackboneConfig | None = None) -> list[str]:
    """Markdown summaries behind Figures 3(a) and 5 (means and sds), for the tables that exist.

    ``backbone``: the run's backbone config, its variant marked in the trunk calibration's table.
    """
    sections = []
    if results.ksweep is not None:
        k_md = results.ksweep.groupby(["dataset", "k"])[["accuracy", "iou"]].agg(["mean", "std"])
        k_md.columns = [f"{a} {b}" for a, b in k_md.columns]
        sections.append("### Sensitivity to k (Figure 3a; mean and sd over 3 test halves)\n\n"
                        + k_md.reset_index().to_markdown(index=False, floatfmt=".3f"))
    if results.unseen is not None:
        per_seed = results.unseen.groupby(["dataset", "method", "split", "seed"])["iou"].mean()
        u_md = per_seed.groupby(["dataset", "method", "split"]).agg(["mean", "std", "count"])
        u_md.columns = ["IoU mean", "IoU sd over seeds", "seeds"]
        sections.append("### Seen vs unseen classes (Figure 5; IoU coverage at q = 50)\n\n"
                        + u_md.reset_index().to_markdown(index=False, floatfmt=".3f"))
    sections += beyond_iou_sections(results, backbone)
    return sections


def beyond_iou_sections(results: Results, backbone: BackboneConfig | None = None) -> list[str]:
    """The border diagnostic (one block per stage: before and, once run, after the trunk change; and, once
    the trunk calibration has run, before / after on the validation split with the variant of ``backbone``
    marked) and the deletion / insertion table (notebook 11)."""
    from lvwlib.paper import border, faithfulness  # late: the report reads CSVs only otherwise

    sections = []
    if results.border is not None:
        for stage, rows in results.border.groupby("stage", sort=False):
            body = border.summary_markdown(rows).split("\n", 2)[2]  # without its own title
            sections.append(f"### Border diagnostic: {stage}\n\n" + body)
    if results.trunk_calibration is not None:
        chosen = None
        if backbone is not None:
            # without the run record: variants named after backbone.border (params/calibration_trunk.yaml)
            variants = results.trunk_variants or {
                v: {"backbone": {"border": v}} for v in dict.fromkeys(results.trunk_calibration["variant"])}
            chosen = border.chosen_variant(variants, to_dict(backbone))
        sections.append("##" + border.calibration_markdown(results.trunk_calibration, chosen))
    if results.faithfulness is not None:
        per_image = results.faithfulness
        n = int(per_image.groupby(["dataset", "row", "seed"]).size().max())
        steps = None
        curves = results.root / "faithfulness_curves.csv"
        if curves.exists():
            steps = int(pd.read_csv(curves)["fraction"].nunique() - 1)
        body = faithfulness.summary_markdown(per_image, n, steps if steps is not None else "?").split("\n", 2)[2]
        sections.append("### Deletion / insertion faithfulness\n\n" + body)
    return sections


def same_data_sections(results: Results) -> list[str]:
    """For each dataset of Table 1 that is the paper's own data (:data:`SAME_DATA`: flowers102, the
    real Oxford 102 Flowers with its official split), every row against the paper's column for it,
    number by number: the paper's accuracy and IoU, ours (mean over seeds) and the difference."""
    if results.table1 is None:
        return []
    summary = summarise(results.table1)
    sections = []
    for dataset in [d for d in dict.fromkeys(results.table1["dataset"]) if d in SAME_DATA]:
        cmp = paper_comparison(summary, dataset)
        sections.append(
            f"### {dataset} against the paper's {STAND_IN[dataset]} column, number by number\n\n"
            "The same images and split as the paper; the backbone (EfficientNet-Lite0 with a cached trunk here, "
            "ResNet-34 there) and the training budget differ. Ours: mean over seeds; difference: ours - paper "
            "(accuracy in points; – where a side has no number).\n\n" + _formatted(cmp).to_markdown(index=False, disable_numparse=True))
    return sections


def _formatted(cmp: pd.DataFrame) -> pd.DataFrame:
    """:func:`paper_comparison`'s numbers as text: accuracies with 2 decimals, IoUs with 4, – for none."""
    out = cmp.copy()
    for column in out.columns[1:]:
        digits = 4 if "IoU" in column else 2
        sign = "+" if column.startswith("difference") else ""
        out[column] = [f"{v:{sign}.{digits}f}" if pd.notna(v) else "–" for v in cmp[column]]
    return out


def table_rows(root: Path, datasets: list[str]) -> list[dict[str, str]]:
    """The tables that exist under ``root``: link, caption, paper counterpart."""
    rows = [{"table": f"[{stem}.md]({stem}.md) ([csv]({stem}.csv))", "caption": caption, "paper": paper}
            for stem, caption, paper in TABLES if (root / f"{stem}.md").exists()]
    rows += [{"table": f"[{d}/{stem}.csv]({d}/{stem}.csv)", "caption": caption, "paper": paper}
             for d in datasets for stem, caption, paper in TABLE_CSVS if (root / d / f"{stem}.csv").exists()]
    return rows


def report_markdown(results: Results, claims: pd.DataFrame, figure2_dataset: str | None = None,
                    backbone: BackboneConfig | None = None) -> str:
    """``results/README.md``: claims with their evidence, measured summaries, Table 1, every table and figure.

    ``figure2_dataset``: the dataset whose Figure 2 is shown at the top (when it was made);
    ``backbone``: the run's backbone config (its variant marked in the trunk calibration's table).
    """
    root = results.root
    table1 = root / "table1.md"
    table1_md = table1.read_text() if table1.exists() else "*Table 1 has not been run.*\n"
    tables, figures = table_rows(root, results.datasets), figure_rows(root, results.datasets)
    shown = [] if figure2_dataset is None or not (root / figure2_dataset / "figure2.png").exists() else [
        f"## Figure 2 ({figure2_dataset})", f"![Figure 2]({figure2_dataset}/figure2.png)"]
    return "\n\n".join([
        "# Results: Learnable Visual Words, reproduced",
        "Generated by `notebooks/10_report.ipynb` from the CSVs in this folder (datasets: "
        + ", ".join(results.datasets) + "). Rerun `make reproduce` to regenerate everything.",
        "## Claims of the paper and what we measured",
        VERDICT_RULE,
        claims.to_markdown(index=False),
        *measured_sections(results, backbone),
        table1_md.replace("# Table 1", "## Table 1", 1),
        *same_data_sections(results),
        *shown,
        "## Every table",
        pd.DataFrame(tables).to_markdown(index=False) if tables else "*none*",
        "## Every figure",
        pd.DataFrame(figures).to_markdown(index=False) if figures else "*none*",
    ]) + "\n"
