"""Known answers of the analysis computations (lvwlib.paper.analyses) and the report's catalogue
(lvwlib.paper.report); the claims are tested in test_claims.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from lvwlib.core.push import WordSource
from lvwlib.paper.analyses import (
    base_class_similarity,
    chance_iou,
    class_correlation,
    class_word_vectors,
    extreme_pairs,
    half_metrics,
    random_halves,
    random_map_iou,
    source_class_counts,
    source_labels,
)


def test_random_halves_are_seeded_distinct_halves():
    a, b = random_halves(10, 3, seed=1), random_halves(10, 3, seed=1)
    assert len(a) == 3
    for h, h2 in zip(a, b, strict=True):
        assert torch.equal(h, h2)
        assert len(h) == 5 and len(set(h.tolist())) == 5
    assert not all(torch.equal(a[0], h) for h in a[1:])


def test_half_metrics_by_hand():
    correct = torch.tensor([True, False, True, True])
    iou = torch.tensor([0.2, 0.4, 0.6, 0.8])
    df = half_metrics(correct, iou, [torch.tensor([0, 1]), torch.tensor([2, 3])])
    assert df["accuracy"].tolist() == [0.5, 1.0]
    assert df["iou"].tolist() == pytest.approx([0.3, 0.7])


def test_random_map_iou_is_one_third_at_q50():
    # any Grad-CAM: a smooth ramp; noise selects half the pixels independently of it
    ramp = torch.linspace(0, 1, 7)[None, :].expand(7, 7)
    cams = ramp[None].repeat(8, 1, 1)
    iou = random_map_iou(cams, q=50, size=64, seed=0)
    assert iou.mean().item() == pytest.approx(1 / 3, abs=0.01)
    assert chance_iou(50) == pytest.approx(1 / 3)
    # q = 90: 10% of each map -> 0.1 / 1.9
    assert random_map_iou(cams, q=90, size=64).mean().item() == pytest.approx(chance_iou(90), abs=0.01)
    # the reference variant keeps the LOW 90%: chance is 0.9 / 1.1
    ref = random_map_iou(cams, q=90, size=64, variant="reference").mean().item()
    assert ref == pytest.approx(chance_iou(90, "reference"), abs=0.01) and ref > 0.8


def test_class_vectors_and_correlation_by_hand():
    scores = torch.tensor([[1.0, 0.0, 2.0], [3.0, 2.0, 0.0], [0.0, 1.0, 0.0], [4.0, 0.0, 2.0]])
    labels = torch.tensor([0, 0, 1, 2])
    vec = class_word_vectors(scores, labels, 3)
    assert vec.tolist() == [[2.0, 1.0, 1.0], [0.0, 1.0, 0.0], [4.0, 0.0, 2.0]]
    corr = class_correlation(vec)
    # class 0 (2,1,1) vs class 2 (4,0,2): centred (2/3,-1/3,-1/3) and (2,-2,0) -> 2/sqrt(2/3*8)
    assert corr[0, 2] == pytest.approx(2 / np.sqrt(2 / 3 * 8))
    # class 1 (0,1,0) vs class 2: centred (-1/3,2/3,-1/3), (2,-2,0) -> -2/sqrt(2/3*8)
    assert corr[1, 2] == pytest.approx(-2 / np.sqrt(2 / 3 * 8))
    most, least = extreme_pairs(corr)
    assert most == (0, 2) and least == (1, 2)


def test_class_vectors_reject_empty_class():
    with pytest.raises(ValueError, match="class 1"):
        class_word_vectors(torch.ones(2, 3), torch.tensor([0, 0]), 2)


def test_base_class_similarity_is_symmetric_mean_probability():
    probs = torch.tensor([[0.8, 0.2], [0.6, 0.4], [0.1, 0.9]])
    sim = base_class_similarity(probs, torch.tensor([0, 0, 1]), 2)
    # P(1 | class 0) = 0.3, P(0 | class 1) = 0.1 -> 0.2
    assert sim[0, 1] == pytest.approx(0.2) and sim[1, 0] == pytest.approx(0.2)


def test_source_class_counts_by_hand():
    sources = [WordSource(image=5, row=0, col=0), WordSource(image=6, row=1, col=0), WordSource(image=7, row=0, col=1)]
    train_labels = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1])  # images 6 and 7 are of class 1
    word_labels = source_labels(sources, train_labels)
    assert word_labels.tolist() == [0, 1, 1]
    top = torch.tensor([[0, 1], [1, 2], [2, 0]])
    df = source_class_counts(top, torch.tensor([0, 0, 1]), word_labels, ["h0", "h1"], ["a", "b"])
    got = {(r.heldout_class, r.source_class): r.count for r in df.itertuples()}
    assert got == {("h0", "a"): 1, ("h0", "b"): 3, ("h1", "a"): 1, ("h1", "b"): 1}


def test_figure2_image_rule():
    from lvwlib.paper.analyses import figure2_image

    correct = torch.tensor([[False, True, True, True], [True, False, True, True]])
    assert figure2_image(correct) == 2  # the first image every method gets right
    assert figure2_image(torch.tensor([[True, False], [False, False]])) == 0  # else the most methods right


def test_figure_rows_lists_only_existing(tmp_path):
    from lvwlib.paper.report import figure_rows

    (tmp_path / "imagenette").mkdir()
    (tmp_path / "imagenette" / "figure2.png").write_bytes(b"")
    (tmp_path / "iou_vs_quantile.png").write_bytes(b"")
    rows = figure_rows(tmp_path, ["imagenette", "imagewoof"])
    assert [r["paper"] for r in rows] == ["Figure 2", "Figure 3(b-f)"]
    assert rows[0]["figure"].startswith("[imagenette/figure2.png]")
    assert "pdf" not in rows[0]["figure"]  # no PDF beside the PNG (galleries): no dead link
    (tmp_path / "imagenette" / "figure2.pdf").write_bytes(b"")
    assert figure_rows(tmp_path, ["imagenette"])[0]["figure"].endswith("([pdf](imagenette/figure2.pdf))")


def test_save_figure_palette_png_only(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from lvwlib.paper.viz import save_figure

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.imshow(torch.rand(32, 32, 3, generator=torch.Generator().manual_seed(0)).numpy())  # a photo-like raster
    save_figure(fig, tmp_path / "gallery", formats=("png",), palette=True)
    save_figure(fig, tmp_path / "plain")
    plt.close(fig)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gallery.png", "plain.pdf", "plain.png"]
    palette, plain = Image.open(tmp_path / "gallery.png"), Image.open(tmp_path / "plain.png")
    assert palette.mode == "P" and len(palette.getcolors(maxcolors=257)) <= 256
    assert plain.mode == "RGBA" and palette.size == plain.size


def test_most_used_words_by_hand():
    from lvwlib.paper.analyses import most_used_words

    top = torch.tensor([[3, 1], [3, 0], [3, 1]])  # word 3 three times, word 1 twice, word 0 once
    assert most_used_words(top, num_words=5, limit=2) == [3, 1]
    assert most_used_words(top, num_words=5, limit=4) == [3, 1, 0, 2]  # unused words by index
    assert most_used_words(top, num_words=3, limit=5) == [0, 1, 2]  # M <= limit: every word, in order


def test_random_map_sweep_equals_one_call_per_q_and_variant():
    from lvwlib.paper.analyses import random_map_iou, random_map_sweep

    cams = torch.rand(3, 7, 7, generator=torch.Generator().manual_seed(1))
    sweep = random_map_sweep(cams, [50.0, 90.0], size=32, seed=2)
    for (variant, q), iou in sweep.items():
        assert torch.equal(iou, random_map_iou(cams, q, 32, variant, seed=2)), (variant, q)
    # in pieces of 2 images (the last one short): the same numbers bit for bit
    pieces = random_map_sweep(cams, [50.0, 90.0], size=32, seed=2, chunk=2)
    assert pieces.keys() == sweep.keys() and all(torch.equal(pieces[k], sweep[k]) for k in sweep)


def _summary(dataset: str) -> pd.DataFrame:
    from lvwlib.paper.tables import summarise

    long = pd.DataFrame([
        {"dataset": dataset, "method": m, "seed": seed, "accuracy": acc, "iou": iou}
        for seed in (0, 1)
        for m, acc, iou in (("Base + Grad-CAM", 0.9, 1.0), ("LVW", 0.8, 0.6), ("Random map", float("nan"), 0.33))
    ])
    return summarise(long)


def _table(md: str, title: str) -> pd.DataFrame:
    """The markdown table under the heading starting with ``title`` as a DataFrame of strings."""
    block = md.split(f"### {title}")[1].split("\n\n")[1]
    lines = [line.strip().strip("|").split("|") for line in block.splitlines() if line.startswith("|")]
    header, body = [c.strip() for c in lines[0]], [[c.strip() for c in r] for r in lines[2:]]
    return pd.DataFrame(body, columns=header).set_index("method")


PAPER_HEADERS = ["STL10 (ours: imagenette)", "Oxford Flower (ours: flowers102)", "Oxford-IIIT Pets (no offline data)",
                 "Stanford-Dogs (ours: imagewoof)", "Food-101 (ours: food101_10)", "AWA2 (ours: animals22)"]


def test_table1_of_a_users_dataset_comes_after_the_papers_columns_not_run():
    from lvwlib.paper.tables import table1_markdown

    md = table1_markdown(_summary("food-876102a4"))
    acc = _table(md, "Accuracy")
    assert list(acc.columns) == [*PAPER_HEADERS, "food-876102a4 (ours only)"]
    assert list(acc.index) == ["Base + Grad-CAM", "LVW", "Random map", "seeds"]
    # ours only in the user's column (mean ± std over the 2 seeds); the paper's columns: not run
    assert acc.loc["LVW", "food-876102a4 (ours only)"] == "80.00 ± 0.00"
    assert acc.loc["LVW", "STL10 (ours: imagenette)"] == "not run · paper 89.75"
    assert acc.loc["LVW", "Oxford-IIIT Pets (no offline data)"] == "no offline data · paper 86.20"
    assert acc.loc["seeds", "food-876102a4 (ours only)"] == "2"
    assert "None" not in md and "nan" not in md
    assert "- **food-876102a4 (ours only)**: A dataset of your own" in md


def test_table1_in_the_papers_column_order_with_known_cells():
    from lvwlib.paper.tables import summarise, table1_markdown

    long = pd.DataFrame([
        {"dataset": d, "method": m, "seed": seed, "accuracy": acc, "iou": iou}
        for d in ("animals22", "flowers102", "imagenette") for seed in (0, 1, 2)
        for m, acc, iou in (("Base + Grad-CAM", 0.90, 1.0), ("LVW", 0.80 + 0.01 * seed, 0.6 + 0.1 * seed),
                            ("Random map", float("nan"), 0.33))
    ])
    md = table1_markdown(summarise(long))
    acc, iou = _table(md, "Accuracy"), _table(md, "IoU coverage")
    assert list(acc.columns) == list(iou.columns) == PAPER_HEADERS  # the paper's order, whatever the run's
    # LVW on flowers102: accuracy 81 ± 1 (%), IoU 0.7 ± 0.1 over 3 seeds; the paper's Oxford Flower numbers beside
    assert acc.loc["LVW", "Oxford Flower (ours: flowers102)"] == "81.00 ± 1.00 · paper 91.81"
    assert iou.loc["LVW", "Oxford Flower (ours: flowers102)"] == "0.7000 ± 0.1000 · paper 0.7967"
    assert acc.loc["Base + Grad-CAM", "AWA2 (ours: animals22)"] == "90.00 ± 0.00 · paper 93.66"
    assert acc.loc["Random map", "STL10 (ours: imagenette)"] == "– · paper –"
    assert iou.loc["Random map", "STL10 (ours: imagenette)"] == "0.3300 ± 0.0000 · paper –"
    assert iou.loc["LVW", "Food-101 (ours: food101_10)"] == "not run · paper 0.6969"
    assert acc.loc["seeds"].tolist() == ["3", "3", "no offline data", "not run", "not run", "3"]
    assert "flowers17" not in md  # flowers17 left Table 1's columns


def test_table1_flowers17_is_a_column_of_its_own():
    from lvwlib.paper.tables import table1_columns

    columns = table1_columns(["flowers17", "imagenette"])
    assert [c.header for c in columns][-1] == "flowers17 (ours only)" and columns[0].run


def test_paper_comparison_of_flowers102_number_by_number():
    from lvwlib.paper.tables import ROW_ORDER, paper_comparison

    cmp = paper_comparison(_summary("flowers102"), "flowers102").set_index("method")
    assert list(cmp.index) == [m for m in ROW_ORDER if m != "SRAE"]  # the paper's six rows + random map
    assert cmp.loc["Base + Grad-CAM", "paper accuracy %"] == 98.17
    assert cmp.loc["Base + Grad-CAM", "difference (points)"] == pytest.approx(90.0 - 98.17)
    assert cmp.loc["LVW", "paper IoU"] == 0.7967
    assert cmp.loc["LVW", "difference (IoU)"] == pytest.approx(0.6 - 0.7967)
    assert np.isnan(cmp.loc["ProtoPNet", "ours accuracy %"])  # not in this run


def test_report_compares_flowers102_with_the_papers_column(tmp_path):
    from lvwlib.paper.report import Results, report_markdown, same_data_sections

    long = pd.DataFrame([
        {"dataset": d, "method": m, "seed": seed, "accuracy": acc, "iou": iou}
        for d in ("flowers102", "imagenette") for seed in (0, 1)
        for m, acc, iou in (("Base + Grad-CAM", 0.9, 1.0), ("LVW", 0.85, 0.7))
    ])
    results = Results(tmp_path, ["flowers102", "imagenette"], long, None, None, None, None)
    (section,) = same_data_sections(results)  # imagenette is a stand-in: no number-by-number section
    assert section.startswith("### flowers102 against the paper's Oxford Flower column, number by number")
    rows = {cells[0]: cells[1:] for line in section.splitlines() if line.startswith("| ")
            for cells in [[c.strip() for c in line.strip().strip("|").split("|")]]}
    assert rows["LVW"] == ["91.81", "85.00", "-6.81", "0.7967", "0.7000", "-0.0967"]
    assert rows["Base + Grad-CAM"] == ["98.17", "90.00", "-8.17", "1.0000", "1.0000", "+0.0000"]
    assert rows["ProtoPNet"] == ["86.33", "–", "–", "0.3081", "–", "–"]  # a row of the paper we did not run
    assert section in report_markdown(results, pd.DataFrame([{"claim": "x"}]))


def test_mean_sd_cells_by_hand():
    from lvwlib.paper.tables import mean_sd_cells

    cells = mean_sd_cells([0.5, 0.25, float("nan")], [0.125, float("nan"), 0.1])
    assert cells == ["0.500 ± 0.125", "0.250", "–"]  # one seed: no sd; no measurement: a dash
    assert mean_sd_cells([1023.0], [0.0], digits=0) == ["1023 ± 0"]
