"""Does my rerun agree with yours? A rerun's Table 1 beside the committed one, cell by cell.

    python -m lvwlib compare /tmp/my_rerun                      # against results/ (committed)
    python -m lvwlib compare /tmp/my_rerun --reference other/   # against another run
    make compare RESULTS=/tmp/my_rerun

For every dataset x method x metric (accuracy, IoU) of either table: the committed mean over
seeds, its spread (standard deviation over seeds), the rerun's mean, the difference, and whether
the rerun's mean lies within the committed spread (mean ± :data:`SPREAD_SDS` sd). A rerun with
the same code, seeds, machine and thread count gives identical numbers; on another CPU or
thread count floating-point rounding differs, training amplifies it, and the means land within
about the spread over seeds. When both folders hold ``claims.csv``, the verdicts are set side
by side too.

When the rerun was written over the reference folder itself (``make reproduce`` into
``results/``), the reference is read from the last commit (``git show HEAD:results/...``).
Writes ``<rerun>/compare_table1.csv`` and ``.md`` and prints the markdown.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from lvwlib.store.paths import project_root
from lvwlib.store.records import write_text

SPREAD_SDS = 2.0  # "within the spread": within this many standard deviations over seeds of the committed mean
METRICS = ("accuracy", "iou")
KEYS = ["dataset", "method", "metric"]


def read_table(folder: Path, name: str, from_git: bool = False) -> pd.DataFrame | None:
    """``folder/name`` as a DataFrame (None when missing); ``from_git``: as in the last commit."""
    path = folder / name
    if not from_git:
        return pd.read_csv(path) if path.exists() else None
    root = project_root()
    try:
        relative = path.resolve().relative_to(root)
    except ValueError:
        return None
    shown = subprocess.run(["git", "show", f"HEAD:{relative.as_posix()}"], cwd=root, capture_output=True, text=True)
    return pd.read_csv(io.StringIO(shown.stdout)) if shown.returncode == 0 else None


def _per_cell(long: pd.DataFrame) -> pd.DataFrame:
    """Long Table 1 (one row per dataset, method, seed) -> one row per dataset x method x metric."""
    metrics = [m for m in METRICS if m in long]
    melted = long.melt(id_vars=["dataset", "method", "seed"], value_vars=metrics, var_name="metric").dropna(
        subset=["value"])
    return melted.groupby(KEYS, sort=False)["value"].agg(mean="mean", sd="std", seeds="count").reset_index()


def compare_table1(reference: pd.DataFrame, rerun: pd.DataFrame) -> pd.DataFrame:
    """Every cell of either long Table 1, side by side.

    Columns: dataset, method, metric, committed mean / sd / seeds, rerun mean / seeds, difference
    (rerun - committed), within_spread (True / False; None when the committed table has one seed
    or lacks the cell), and status: ``identical``, ``within spread``, ``OUTSIDE spread``,
    ``no spread (one seed)``, ``only in the committed table``, ``only in the rerun``.
    """
    ref, new = _per_cell(reference), _per_cell(rerun)
    both = ref.merge(new, on=KEYS, how="outer", suffixes=("_committed", "_rerun"), sort=False)
    both["difference"] = both["mean_rerun"] - both["mean_committed"]
    status, within = [], []
    for row in both.itertuples(index=False):
        if pd.isna(row.mean_rerun):
            status.append("only in the committed table")
            within.append(None)
        elif pd.isna(row.mean_committed):
            status.append("only in the rerun")
            within.append(None)
        elif row.difference == 0:
            status.append("identical")
            within.append(True)
        elif pd.isna(row.sd_committed):
            status.append("no spread (one seed)")
            within.append(None)
        else:
            inside = bool(abs(row.difference) <= SPREAD_SDS * row.sd_committed)
            status.append("within spread" if inside else "OUTSIDE spread")
            within.append(inside)
    both["within_spread"] = within
    both["status"] = status
    order = ["dataset", "method", "metric", "mean_committed", "sd_committed", "seeds_committed", "mean_rerun",
             "seeds_rerun", "difference", "within_spread", "status"]
    return both[order]


def _fmt(value: float, metric: str, signed: bool = False) -> str:
    if pd.isna(value):
        return "–"
    scale, digits = (100, 2) if metric == "accuracy" else (1, 4)
    return f"{value * scale:{'+' if signed else ''}.{digits}f}"


def compare_markdown(cells: pd.DataFrame, claims: pd.DataFrame | None = None) -> str:
    """The comparison as markdown: one table per dataset, a summary line, the claims' verdicts."""
    parts = ["# Rerun vs committed Table 1", "",
             f"Means over seeds; accuracy in %. *Within spread*: the rerun's mean lies within the committed "
             f"mean ± {SPREAD_SDS:g} standard deviations over seeds. Same machine and thread count: identical; "
             "another CPU or thread count: expect within spread.", ""]
    for dataset, block in cells.groupby("dataset", sort=False):
        rows = [{"method": r.method, "metric": r.metric,
                 "committed": f"{_fmt(r.mean_committed, r.metric)} ± {_fmt(r.sd_committed, r.metric)}",
                 "rerun": _fmt(r.mean_rerun, r.metric), "difference": _fmt(r.difference, r.metric, signed=True),
                 "seeds": f"{_int(r.seeds_committed)} / {_int(r.seeds_rerun)}", "status": r.status}
                for r in block.itertuples(index=False)]
        parts += [f"## {dataset}", "", pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True), ""]
    counts = cells["status"].value_counts()
    parts.append("Cells: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + f" (of {len(cells)}).")
    if claims is not None and len(claims):
        parts += ["", "## Claims", "", claims.to_markdown(index=False)]
    return "\n".join(parts) + "\n"


def _int(value: float) -> str:
    return "–" if pd.isna(value) else str(int(value))


def compare_claims(reference: pd.DataFrame | None, rerun: pd.DataFrame | None) -> pd.DataFrame | None:
    """The claims' verdicts side by side (None unless both folders have ``claims.csv``)."""
    if reference is None or rerun is None:
        return None
    out = reference[["claim", "verdict"]].merge(rerun[["claim", "verdict"]], on="claim", how="outer",
                                                suffixes=(" (committed)", " (rerun)"), sort=False)
    out["same"] = np.where(out["verdict (committed)"] == out["verdict (rerun)"], "yes", "NO")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lvwlib compare", description=__doc__.splitlines()[0])
    parser.add_argument("rerun", help="the rerun's results folder")
    parser.add_argument("--reference", default="results", help="the committed results folder (default results)")
    args = parser.parse_args(argv)
    rerun_dir, ref_dir = Path(args.rerun).resolve(), Path(args.reference).resolve()
    same = rerun_dir == ref_dir  # reran into the committed folder: compare with the last commit
    rerun = read_table(rerun_dir, "table1.csv")
    reference = read_table(ref_dir, "table1.csv", from_git=same)
    for table, where in ((rerun, rerun_dir), (reference, f"{ref_dir} (last commit)" if same else ref_dir)):
        if table is None:
            print(f"compare: no table1.csv in {where}", file=sys.stderr)
            return 1
    cells = compare_table1(reference, rerun)
    claims = compare_claims(read_table(ref_dir, "claims.csv", from_git=same), read_table(rerun_dir, "claims.csv"))
    markdown = compare_markdown(cells, claims)
    write_text(rerun_dir / "compare_table1.csv", cells.to_csv(index=False))
    write_text(rerun_dir / "compare_table1.md", markdown)
    print(markdown, end="")
    return 0
