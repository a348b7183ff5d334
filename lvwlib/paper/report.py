"""The claims table of ``results/README.md``: each paper claim, the measured evidence
and a verdict computed by one stated rule.

Every claim is reduced to a list of *cases* (a dataset, a (dataset, q) cell, a
k value, ...), each of which passes or fails a numeric check. The verdict rule
(:data:`VERDICT_RULE`) is the same for every claim:

- holds: every case passes;
- partly: at least one case passes, not all;
- does not hold: no case passes;
- not measured: no case (the CSV behind it is missing).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

VERDICT_RULE = (
    "Each claim is checked on several cases (listed in its row). Verdict: **holds** when every case "
    "passes, **partly** when some but not all pass, **does not hold** when none passes, "
    "**not measured** when the results it needs are missing. Means are over seeds (or test halves)."
)
ACCURACY_TOLERANCE = 0.05  # "close to the base model": at most 5 points below it
K_FLAT_RANGE = 0.03  # "accuracy flat in k": max - min of mean accuracy over k at most 3 points
UNSEEN_RATIO = 0.9  # words transfer: unseen IoU at least 90% of seen IoU
BASELINES = ("ProtoPNet", "ProtoTree", "ProtoPShare")


def verdict(passed: list[bool]) -> str:
    """The verdict of a claim from its cases' pass/fail list (see :data:`VERDICT_RULE`)."""
    if not passed:
        return "not measured"
    if all(passed):
        return "holds"
    return "partly" if any(passed) else "does not hold"


@dataclass
class Claim:
    claim: str  # the paper's claim, in a few words
    check: str  # what each case must satisfy
    evidence: str  # the measured numbers
    passed: list[bool]  # one entry per case

    @property
    def verdict(self) -> str:
        return verdict(self.passed)

    def row(self) -> dict[str, str]:
        cases = f"{sum(self.passed)}/{len(self.passed)}" if self.passed else "–"
        return {"claim": self.claim, "check (per case)": self.check, "evidence": self.evidence,
                "cases passed": cases, "verdict": self.verdict}


def _means(table1: pd.DataFrame) -> pd.DataFrame:
    """dataset x method mean accuracy and IoU from the long Table 1 (one row per seed)."""
    return table1.groupby(["dataset", "method"], sort=False)[["accuracy", "iou"]].mean()


def claim_accuracy_close(table1: pd.DataFrame | None) -> Claim:
    claim = Claim("LVW's accuracy is close to the base model's",
                  f"LVW accuracy >= base accuracy - {ACCURACY_TOLERANCE * 100:.0f} points, per dataset", "", [])
    if table1 is None:
        return claim
    m = _means(table1)
    parts = []
    for d in dict.fromkeys(table1["dataset"]):
        if (d, "LVW") in m.index and (d, "Base + Grad-CAM") in m.index:
            lvw, base = m.loc[(d, "LVW"), "accuracy"], m.loc[(d, "Base + Grad-CAM"), "accuracy"]
            claim.passed.append(bool(lvw >= base - ACCURACY_TOLERANCE))
            parts.append(f"{d}: {lvw * 100:.1f} vs {base * 100:.1f}")
    claim.evidence = "; ".join(parts)
    return claim


def claim_best_interpretable(table1: pd.DataFrame | None) -> Claim:
    claim = Claim("LVW has the best accuracy among the interpretable models",
                  "LVW accuracy >= that of ProtoPNet, ProtoTree and ProtoPShare, per dataset", "", [])
    if table1 is None:
        return claim
    m = _means(table1)
    parts = []
    for d in dict.fromkeys(table1["dataset"]):
        others = {b: m.loc[(d, b), "accuracy"] for b in BASELINES if (d, b) in m.index}
        if (d, "LVW") not in m.index or not others:
            continue
        best = max(others, key=others.get)
        lvw = m.loc[(d, "LVW"), "accuracy"]
        claim.passed.append(bool(lvw >= others[best]))
        parts.append(f"{d}: LVW {lvw * 100:.1f} vs best {best} {others[best] * 100:.1f}")
    claim.evidence = "; ".join(parts)
    return claim


def claim_iou_every_q(sweep: pd.DataFrame | None) -> Claim:
    claim = Claim("LVW's IoU coverage is above every baseline at every q",
                  "LVW mean IoU > each of ProtoPNet, ProtoTree, ProtoPShare, per (dataset, q)", "", [])
    if sweep is None:
        return claim
    m = sweep.groupby(["dataset", "q", "method"])["iou"].mean()
    worst = []
    for (d, q), block in m.groupby(level=[0, 1]):
        block = block.droplevel([0, 1])
        others = [b for b in BASELINES if b in block.index]
        if "LVW" not in block.index or not others:
            continue
        margin = block["LVW"] - max(block[b] for b in others)
        claim.passed.append(bool(margin > 0))
        worst.append((margin, d, q))
    if worst:
        margin, d, q = min(worst)
        claim.evidence = f"smallest margin over the best baseline: {margin:+.3f} ({d}, q = {q:g})"
    return claim


def claim_alignment(table1: pd.DataFrame | None) -> Claim:
    claim = Claim("Attention alignment is what raises IoU",
                  "LVW mean IoU > LVW w/o alignment mean IoU, per dataset", "", [])
    if table1 is None:
        return claim
    m = _means(table1)
    parts = []
    for d in dict.fromkeys(table1["dataset"]):
        if (d, "LVW") in m.index and (d, "LVW w/o alignment") in m.index:
            a, b = m.loc[(d, "LVW"), "iou"], m.loc[(d, "LVW w/o alignment"), "iou"]
            claim.passed.append(bool(a > b))
            parts.append(f"{d}: {a:.3f} vs {b:.3f}")
    claim.evidence = "; ".join(parts)
    return claim


def claim_k(ksweep: pd.DataFrame | None) -> Claim:
    claim = Claim("Accuracy is flat in k while IoU drops for small k",
                  f"(1) mean accuracy range over k <= {K_FLAT_RANGE * 100:.0f} points; "
                  "(2) mean IoU at k <= 3 below mean IoU at k >= 10", "", [])
    if ksweep is None:
        return claim
    m = ksweep.groupby("k")[["accuracy", "iou"]].mean()
    acc_range = float(m["accuracy"].max() - m["accuracy"].min())
    claim.passed.append(acc_range <= K_FLAT_RANGE)
    small, large = m.loc[m.index <= 3, "iou"], m.loc[m.index >= 10, "iou"]
    text = f"accuracy range {acc_range * 100:.1f} points"
    if len(small) and len(large):
        claim.passed.append(bool(small.mean() < large.mean()))
        text += f"; IoU k<=3 {small.mean():.3f} vs k>=10 {large.mean():.3f}"
    claim.evidence = text
    return claim


def claim_similar_share(pairs: pd.DataFrame | None, min_rho: float = 0.3) -> Claim:
    claim = Claim("Similar classes share words",
                  f"Spearman rho between class pairs' word-vector correlation and the base model's "
                  f"class similarity >= {min_rho}, per dataset", "", [])
    if pairs is None:
        return claim
    parts = []
    for d, block in pairs.groupby("dataset", sort=False):
        if len(block) < 3:
            continue
        rho = block["word_correlation"].rank().corr(block["base_similarity"].rank())
        rho = 0.0 if np.isnan(rho) else float(rho)
        claim.passed.append(rho >= min_rho)
        parts.append(f"{d}: rho = {rho:.2f} over {len(block)} pairs")
    claim.evidence = "; ".join(parts)
    return claim


def claim_unseen(unseen: pd.DataFrame | None) -> Claim:
    claim = Claim("Words explain unseen classes",
                  f"(1) LVW unseen IoU >= {UNSEEN_RATIO:g} x its seen IoU; (2) LVW unseen IoU > ProtoPNet unseen IoU",
                  "", [])
    if unseen is None:
        return claim
    m = unseen.groupby(["method", "split"])["iou"].mean()
    if ("LVW", "seen") in m.index and ("LVW", "unseen") in m.index:
        seen, uns = m[("LVW", "seen")], m[("LVW", "unseen")]
        claim.passed.append(bool(uns >= UNSEEN_RATIO * seen))
        text = f"LVW seen {seen:.3f}, unseen {uns:.3f}"
        if ("ProtoPNet", "unseen") in m.index:
            p = m[("ProtoPNet", "unseen")]
            claim.passed.append(bool(uns > p))
            text += f"; ProtoPNet unseen {p:.3f}"
        claim.evidence = text
    return claim


def claims_table(
    table1: pd.DataFrame | None = None, sweep: pd.DataFrame | None = None, ksweep: pd.DataFrame | None = None,
    pairs: pd.DataFrame | None = None, unseen: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Every claim's row (claim, check, evidence, cases passed, verdict)."""
    claims = [
        claim_accuracy_close(table1), claim_best_interpretable(table1), claim_iou_every_q(sweep),
        claim_alignment(table1), claim_k(ksweep), claim_similar_share(pairs), claim_unseen(unseen),
    ]
    return pd.DataFrame([c.row() for c in claims])


# Every figure of the report: (file stem under results_dir, with {dataset} for per-dataset
# figures; one-line caption; the paper's counterpart). Captions say what is drawn, never a result.
FIGURES: list[tuple[str, str, str]] = [
    ("{dataset}/figure2", "One test image: each method's top 3 words boxed on it beside their source "
     "training patches (a); base Grad-CAM and each method's combined top-m map with its IoU (b).", "Figure 2"),
    ("{dataset}/figure3a_k_sweep", "Accuracy and IoU coverage of LVW for each k (top words in the alignment "
     "loss); mean ± sd over 3 random test halves.", "Figure 3(a)"),
    ("iou_vs_quantile", "IoU coverage vs quantile threshold q per dataset; top row the paper's high-region "
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
]
TABLES: list[tuple[str, str, str]] = [
    ("table1", "Accuracy and IoU coverage (q = 50) of every method, mean ± sd over seeds, with a random-map "
     "row (chance level).", "Table 1"),
    ("srae_table", "SRAE's faithfulness and orthogonality.", "Table 2"),
    ("iou_paper_vs_reference", "IoU coverage by the paper's definition vs the reference code's variant.",
     "none"),
    ("random_map", "IoU of uniform-noise maps against Grad-CAM at every q, both variants.", "none"),
]


def figure_rows(results_dir: Path, datasets: list[str]) -> list[dict[str, str]]:
    """The figures that exist under ``results_dir``: path (relative, PNG), caption, paper counterpart."""
    rows = []
    for stem, caption, paper in FIGURES:
        stems = [stem.format(dataset=d) for d in datasets] if "{dataset}" in stem else [stem]
        for s in stems:
            if (results_dir / f"{s}.png").exists():
                rows.append({"figure": f"[{s}.png]({s}.png) ([pdf]({s}.pdf))", "caption": caption, "paper": paper})
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
    return Results(root, datasets, read("table1.csv"), sweep, read_all("k_sweep.csv"), read_all("class_pairs.csv"),
                   read_all("unseen_iou.csv"))


def measured_sections(results: Results) -> list[str]:
    """Markdown summaries behind Figures 3(a) and 5 (means and sds), for the tables that exist."""
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
    return sections


def table_rows(root: Path, datasets: list[str]) -> list[dict[str, str]]:
    """The tables that exist under ``root``: link, caption, paper counterpart."""
    rows = [{"table": f"[{stem}.md]({stem}.md) ([csv]({stem}.csv))", "caption": caption, "paper": paper}
            for stem, caption, paper in TABLES if (root / f"{stem}.md").exists()]
    rows += [{"table": f"[{d}/{stem}.csv]({d}/{stem}.csv)", "caption": caption, "paper": paper}
             for d in datasets for stem, caption, paper in TABLE_CSVS if (root / d / f"{stem}.csv").exists()]
    return rows


def report_markdown(results: Results, claims: pd.DataFrame, figure2_dataset: str | None = None) -> str:
    """``results/README.md``: claims with their evidence, measured summaries, Table 1, every table and figure.

    ``figure2_dataset``: the dataset whose Figure 2 is shown at the top (when it was made).
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
        *measured_sections(results),
        table1_md.replace("# Table 1", "## Table 1", 1),
        *shown,
        "## Every table",
        pd.DataFrame(tables).to_markdown(index=False) if tables else "*none*",
        "## Every figure",
        pd.DataFrame(figures).to_markdown(index=False) if figures else "*none*",
    ]) + "\n"
