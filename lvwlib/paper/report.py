"""The report's catalogue of figures and tables (``results/README.md``, notebook 10).

The claims table and its verdict rule are in :mod:`lvwlib.paper.claims`.
"""

from __future__ import annotations

from pathlib import Path

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
