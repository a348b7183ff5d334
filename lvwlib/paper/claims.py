"""The claims table of ``results/README.md``: each paper claim, its cases with a margin and an
uncertainty, and a verdict computed by one stated rule (:data:`VERDICT_RULE`).

Every claim is reduced to *cases* (a dataset, a (dataset, q) cell, a k range, ...). A case has

- a **margin**: how far the measured statistic lies on the passing side of the claim's
  threshold (positive: passes), e.g. LVW accuracy - (base accuracy - 5 points);
- an **uncertainty**: the standard error of that margin from what changes when the results
  are computed again: the training seeds (the spread over seeds; a rerun on another machine
  moves results by about as much, since training amplifies rounding differences) and the test
  images (a bootstrap over seeds and test images where the results hold per-image values, else
  the binomial standard error of an accuracy over the test images). Statistics of different
  methods are taken as independent, which overstates the uncertainty of a difference measured
  on the same images: a verdict is never claimed on a doubtful margin.

A case **passes** when its margin exceeds :data:`Z` standard errors, **fails** when it lies
below minus that, and is **inconclusive** otherwise (also when the uncertainty is unknown: one
seed). A claim's verdict is the one all outcomes of its inconclusive cases would agree on.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

Z = 2.0  # a case is decided when its margin lies beyond Z standard errors of 0 (~95%)
ACCURACY_TOLERANCE = 0.05  # "close to the base model": at most 5 points below it
K_FLAT_RANGE = 0.03  # "accuracy flat in k": max - min of mean accuracy over k at most 3 points
UNSEEN_RATIO = 0.9  # words transfer: unseen IoU at least 90% of seen IoU
MIN_RHO = 0.3  # "similar classes share words": Spearman rho at least this
BASELINES = ("ProtoPNet", "ProtoTree", "ProtoPShare")
N_BOOT = 2000  # bootstrap draws (seeded: the table is the same on every run)
MAX_TEST_SET = 100_000  # largest test set :func:`n_test_images` looks for

VERDICT_RULE = (
    "Each claim is checked on several cases (listed in its row). Each case has a margin (how far the "
    f"measurement lies on the passing side of its threshold) and an uncertainty (± {Z:g} standard errors "
    "over training seeds and test images: a bootstrap where per-image values exist, else the binomial "
    "error of an accuracy combined with the spread over seeds). A case **passes** when its margin is "
    "above the uncertainty, **fails** when it is below minus it, and is **inconclusive** in between (or "
    "with one seed, whose spread is unknown). Verdict: **holds** when every case passes, **does not "
    "hold** when every case fails, **partly** when some pass and some fail, **inconclusive** when the "
    "inconclusive cases could still turn it, **not measured** when the results it needs are missing. "
    "Means are over seeds (or test halves)."
)

PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"


@dataclass(frozen=True)
class Case:
    """One numeric check of a claim: ``margin`` > 0 passes; ``se`` its standard error (nan: unknown)."""

    name: str  # what the case is (a dataset, "imagenette, q = 60", ...)
    evidence: str  # the measured numbers
    margin: float
    se: float
    scale: float = 1.0  # display scale (100: accuracy in points)
    unit: str = ""  # display unit of the margin

    @property
    def outcome(self) -> str:
        """:data:`PASS`, :data:`FAIL` or :data:`INCONCLUSIVE` (see the module docstring)."""
        if not math.isfinite(self.se):
            return INCONCLUSIVE
        if self.margin > Z * self.se:
            return PASS
        if self.margin < -Z * self.se:
            return FAIL
        return INCONCLUSIVE

    def text(self) -> str:
        spread = f"± {Z * self.se * self.scale:.{self._digits}f}" if math.isfinite(self.se) else "± ? (one seed)"
        unit = f" {self.unit}" if self.unit else ""
        return (f"{self.name}: {self.evidence}; margin {self.margin * self.scale:+.{self._digits}f} "
                f"{spread}{unit}: {self.outcome}")

    @property
    def _digits(self) -> int:
        return 1 if self.scale == 100 else 3


def verdict(outcomes: Sequence[str]) -> str:
    """The verdict of a claim from its cases' outcomes (see :data:`VERDICT_RULE`)."""
    if not outcomes:
        return "not measured"
    passed, failed = PASS in outcomes, FAIL in outcomes
    if passed and failed:
        return "partly"  # whatever the inconclusive cases turn out to be
    if INCONCLUSIVE in outcomes:
        return "inconclusive"
    return "holds" if passed else "does not hold"


@dataclass
class Claim:
    claim: str  # the paper's claim, in a few words
    check: str  # what each case must satisfy
    cases: list[Case] = field(default_factory=list)
    note: str = ""  # evidence beyond the cases (e.g. why there are none)

    @property
    def outcomes(self) -> list[str]:
        return [c.outcome for c in self.cases]

    @property
    def verdict(self) -> str:
        return verdict(self.outcomes)

    def row(self) -> dict[str, str]:
        outcomes = self.outcomes
        counts = (f"{outcomes.count(PASS)} / {outcomes.count(FAIL)} / {outcomes.count(INCONCLUSIVE)}"
                  if outcomes else "–")
        evidence = "; ".join([c.text() for c in self.cases] + ([self.note] if self.note else []))
        return {"claim": self.claim, "check (per case)": self.check, "evidence (margin ± uncertainty)": evidence,
                "cases pass / fail / inconclusive": counts, "verdict": self.verdict}


# --------------------------------------------------------------------------- uncertainty


def seed_se(values: Sequence[float]) -> float:
    """Standard error of the mean of ``values`` (one per seed): sd / sqrt(n); nan for one value."""
    values = np.asarray(values, dtype=float)
    return float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else math.nan


def binomial_se(accuracy: float, n_test: int | None) -> float:
    """Standard error of an accuracy over ``n_test`` test images: sqrt(p (1 - p) / n)."""
    if not n_test:
        return math.nan
    return math.sqrt(max(accuracy * (1 - accuracy), 0.0) / n_test)


def n_test_images(accuracies: Sequence[float]) -> int | None:
    """The number of test images behind ``accuracies``: the smallest n making each a fraction k/n.

    An accuracy is k/n stored in float32 (relative error 2^-24), so ``acc * n`` lies within
    n * 2^-24 of an integer; a wrong n fits several values by chance only with probability ~
    (n * 1e-7) per value. None when no n up to :data:`MAX_TEST_SET` fits (or no values).
    """
    values = np.asarray([a for a in accuracies if pd.notna(a)], dtype=float)
    if not len(values):
        return None
    n = np.arange(1, MAX_TEST_SET + 1, dtype=float)[:, None]
    scaled = values[None, :] * n
    fits = (np.abs(scaled - np.round(scaled)) <= n * 2.0**-23 + 1e-9).all(axis=1)
    found = np.flatnonzero(fits)
    return int(found[0] + 1) if len(found) else None


def accuracy_mean_se(values: Sequence[float], n_test: int | None) -> tuple[float, float]:
    """Mean accuracy over seeds and its standard error: seed spread and test-image binomial error."""
    mean = float(np.mean(values))
    return mean, math.hypot(seed_se(values), binomial_se(mean, n_test))


def _diff_se(*ses: float) -> float:
    return math.sqrt(sum(s * s for s in ses))


def bootstrap_se(
    groups: dict[str, np.ndarray], margin: Callable[[dict[str, np.ndarray]], np.ndarray],
    images: dict[str, str] | None = None, n_boot: int = N_BOOT, seed: int = 0,
) -> float:
    """Standard error of ``margin`` by a bootstrap over seeds and test images (crossed).

    Each group (a method on a test split) is a matrix [seeds, images] of per-image values, with
    the same seeds in the same order in every group. A draw resamples the seeds (shared by every
    group: a seed's models are evaluated on every split) and, per image set (``images`` maps a
    group to its set; groups of one set share the draw: the same images), the images; each
    group's statistic is the weighted mean. ``margin`` maps ``{group: [n_boot] means}`` to the
    [n_boot] margins. The rng is seeded: the same table on every run.
    """
    rng = np.random.default_rng(seed)
    n_seeds = {m.shape[0] for m in groups.values()}
    if len(n_seeds) != 1:
        raise ValueError(f"groups with different numbers of seeds: {sorted(n_seeds)}")
    (s,) = n_seeds
    seed_w = rng.multinomial(s, np.full(s, 1 / s), size=n_boot).astype(float)  # [B, S]
    sets = images or {g: g for g in groups}
    image_w: dict[str, np.ndarray] = {}
    for g, m in groups.items():
        if sets[g] not in image_w:
            n = m.shape[1]
            image_w[sets[g]] = rng.multinomial(n, np.full(n, 1 / n), size=n_boot).astype(float)  # [B, N]
    means = {g: np.einsum("bs,sn,bn->b", seed_w, m, image_w[sets[g]]) / (s * m.shape[1]) for g, m in groups.items()}
    return float(np.std(margin(means), ddof=1))


# --------------------------------------------------------------------------- claims


def _per_seed(table1: pd.DataFrame, dataset: str, method: str, column: str) -> np.ndarray | None:
    rows = table1[(table1["dataset"] == dataset) & (table1["method"] == method)]
    values = rows[column].dropna().to_numpy(dtype=float)
    return values if len(values) else None


def _datasets(table: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(table["dataset"]))


def _n_test(table1: pd.DataFrame, dataset: str, n_test: dict[str, int] | None) -> int | None:
    if n_test and dataset in n_test:
        return n_test[dataset]
    return n_test_images(table1.loc[table1["dataset"] == dataset, "accuracy"].tolist())


def _seed_pairs(table1: pd.DataFrame, first: str, second: str, metric: str
                ) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """``(dataset, first's per-seed values, second's)`` for each dataset where both rows have ``metric``."""
    for d in _datasets(table1):
        a, b = _per_seed(table1, d, first, metric), _per_seed(table1, d, second, metric)
        if a is not None and b is not None:
            yield d, a, b


def claim_accuracy_close(table1: pd.DataFrame | None, n_test: dict[str, int] | None = None) -> Claim:
    claim = Claim("LVW's accuracy is close to the base model's",
                  f"LVW accuracy >= base accuracy - {ACCURACY_TOLERANCE * 100:.0f} points, per dataset")
    if table1 is None:
        return claim
    for d, lvw, base in _seed_pairs(table1, "LVW", "Base + Grad-CAM", "accuracy"):
        n = _n_test(table1, d, n_test)
        (a, se_a), (b, se_b) = accuracy_mean_se(lvw, n), accuracy_mean_se(base, n)
        claim.cases.append(Case(d, f"{a * 100:.1f} vs {b * 100:.1f} ({n} test images)",
                                a - (b - ACCURACY_TOLERANCE), _diff_se(se_a, se_b), 100, "points"))
    return claim


def claim_best_interpretable(table1: pd.DataFrame | None, n_test: dict[str, int] | None = None) -> Claim:
    claim = Claim("LVW has the best accuracy among the interpretable models",
                  "LVW accuracy >= that of ProtoPNet, ProtoTree and ProtoPShare, per dataset")
    if table1 is None:
        return claim
    for d in _datasets(table1):
        lvw = _per_seed(table1, d, "LVW", "accuracy")
        others = {b: v for b in BASELINES if (v := _per_seed(table1, d, b, "accuracy")) is not None}
        if lvw is None or not others:
            continue
        n = _n_test(table1, d, n_test)
        best = max(others, key=lambda b: float(np.mean(others[b])))
        (a, se_a), (b, se_b) = accuracy_mean_se(lvw, n), accuracy_mean_se(others[best], n)
        claim.cases.append(Case(d, f"LVW {a * 100:.1f} vs best {best} {b * 100:.1f}", a - b,
                                _diff_se(se_a, se_b), 100, "points"))
    return claim


def claim_iou_every_q(sweep: pd.DataFrame | None) -> Claim:
    claim = Claim("LVW's IoU coverage is above every baseline at every q",
                  "LVW mean IoU > each of ProtoPNet, ProtoTree, ProtoPShare, per (dataset, q)")
    if sweep is None:
        return claim
    if "variant" in sweep:  # the paper's IoU (high-attention regions), not the reference code's variant
        sweep = sweep[sweep["variant"] == "paper"]
    for (d, q), block in sweep.groupby(["dataset", "q"], sort=False):
        per_method = {m: rows["iou"].to_numpy(dtype=float) for m, rows in block.groupby("method")}
        others = [b for b in BASELINES if b in per_method]
        if "LVW" not in per_method or not others:
            continue
        best = max(others, key=lambda b: float(np.mean(per_method[b])))
        lvw, other = per_method["LVW"], per_method[best]
        claim.cases.append(Case(f"{d}, q = {q:g}", f"LVW {lvw.mean():.3f} vs {best} {other.mean():.3f}",
                                float(lvw.mean() - other.mean()), _diff_se(seed_se(lvw), seed_se(other))))
    return claim


def claim_alignment(table1: pd.DataFrame | None) -> Claim:
    claim = Claim("Attention alignment is what raises IoU", "LVW mean IoU > LVW w/o alignment mean IoU, per dataset")
    if table1 is None:
        return claim
    for d, a, b in _seed_pairs(table1, "LVW", "LVW w/o alignment", "iou"):
        claim.cases.append(Case(d, f"{a.mean():.3f} vs {b.mean():.3f}", float(a.mean() - b.mean()),
                                _diff_se(seed_se(a), seed_se(b))))
    return claim


def _resampled_within(ksweep: pd.DataFrame, column: str, rng: np.random.Generator) -> list[np.ndarray]:
    """Per k (sorted), [N_BOOT] bootstrap means of ``column`` over its rows (seeds x test halves)."""
    out = []
    for _, rows in sorted(ksweep.groupby("k"), key=lambda kv: kv[0]):
        values = rows[column].to_numpy(dtype=float)
        picks = rng.integers(0, len(values), size=(N_BOOT, len(values)))
        out.append(values[picks].mean(axis=1))
    return out


def claim_k(ksweep: pd.DataFrame | None) -> Claim:
    claim = Claim("Accuracy is flat in k while IoU drops for small k",
                  f"(1) mean accuracy range over k <= {K_FLAT_RANGE * 100:.0f} points; "
                  "(2) mean IoU at k <= 3 below mean IoU at k >= 10")
    if ksweep is None:
        return claim
    rng = np.random.default_rng(0)
    m = ksweep.groupby("k")[["accuracy", "iou"]].mean().sort_index()
    acc_range = float(m["accuracy"].max() - m["accuracy"].min())
    boot_acc = np.stack(_resampled_within(ksweep, "accuracy", rng))  # [k, B]
    se = float(np.std(boot_acc.max(0) - boot_acc.min(0), ddof=1)) if len(ksweep) > len(m) else math.nan
    claim.cases.append(Case("accuracy over k", f"range {acc_range * 100:.1f} points", K_FLAT_RANGE - acc_range,
                            se, 100, "points"))
    small, large = m.index <= 3, m.index >= 10
    if small.any() and large.any():
        boot_iou = np.stack(_resampled_within(ksweep, "iou", rng))
        boot_margin = boot_iou[large].mean(0) - boot_iou[small].mean(0)
        se = float(np.std(boot_margin, ddof=1)) if len(ksweep) > len(m) else math.nan
        s, g = m.loc[small, "iou"].mean(), m.loc[large, "iou"].mean()
        claim.cases.append(Case("IoU, small vs large k", f"k<=3 {s:.3f} vs k>=10 {g:.3f}", float(g - s), se))
    return claim


def claim_similar_share(pairs: pd.DataFrame | None, min_rho: float = MIN_RHO) -> Claim:
    """Spearman rho per dataset; its standard error from Fisher's z (1.06 / (n - 3), Fieller et al.)."""
    claim = Claim("Similar classes share words",
                  f"Spearman rho between class pairs' word-vector correlation and the base model's "
                  f"class similarity >= {min_rho}, per dataset")
    if pairs is None:
        return claim
    for d, block in pairs.groupby("dataset", sort=False):
        n = len(block[["class_a", "class_b"]].drop_duplicates()) if {"class_a", "class_b"} <= set(block) else len(block)
        if len(block) < 3:
            continue
        rho = block["word_correlation"].rank().corr(block["base_similarity"].rank())
        rho = 0.0 if np.isnan(rho) else float(rho)
        se = (1 - rho**2) * math.sqrt(1.06 / (n - 3)) if n > 3 else math.nan  # delta method from z = atanh(rho)
        claim.cases.append(Case(d, f"rho = {rho:.2f} over {n} pairs", rho - min_rho, se))
    return claim


def _per_image(unseen: pd.DataFrame, method: str, split: str) -> np.ndarray | None:
    """[seeds, images] IoU of ``method`` on ``split`` (seeds and images sorted), or None."""
    rows = unseen[(unseen["method"] == method) & (unseen["split"] == split)]
    if rows.empty:
        return None
    if "image" not in rows or "seed" not in rows:
        return rows["iou"].to_numpy(dtype=float)[None, :]
    grid = rows.pivot_table(index="seed", columns="image", values="iou", aggfunc="mean").sort_index()
    return grid.dropna(axis=1).to_numpy(dtype=float)


def claim_unseen(unseen: pd.DataFrame | None) -> Claim:
    """Per-image IoU on seen and unseen test images, per case (dataset) of Figure 5: the uncertainty
    is a bootstrap over seeds and images."""
    claim = Claim("Words explain unseen classes",
                  f"(1) LVW unseen IoU >= {UNSEEN_RATIO:g} x its seen IoU; (2) LVW unseen IoU > ProtoPNet unseen IoU"
                  "; per dataset with held-out classes")
    if unseen is None:
        return claim
    if "dataset" not in unseen:
        claim.cases += _unseen_cases(unseen, "")
        return claim
    cases = {d: _unseen_cases(block, f"{d}: ") for d, block in unseen.groupby("dataset", sort=False)}
    claim.cases += [c for d in cases for c in cases[d]]
    return claim


def _unseen_cases(unseen: pd.DataFrame, prefix: str) -> list[Case]:
    """The cases of :func:`claim_unseen` on one dataset's rows (names start with ``prefix``)."""
    groups = {f"{m}/{s}": g for m in ("LVW", "ProtoPNet") for s in ("seen", "unseen")
              if (g := _per_image(unseen, m, s)) is not None}
    if "LVW/seen" not in groups or "LVW/unseen" not in groups:
        return []
    images = {g: g.split("/")[1] for g in groups}  # methods share their test images
    several_seeds = len({g.shape[0] for g in groups.values()}) == 1 and next(iter(groups.values())).shape[0] > 1

    def se_of(margin: Callable[[dict[str, np.ndarray]], np.ndarray], names: list[str]) -> float:
        if not several_seeds:
            return math.nan
        return bootstrap_se({g: groups[g] for g in names}, margin, {g: images[g] for g in names})

    seen, uns = groups["LVW/seen"].mean(), groups["LVW/unseen"].mean()
    cases = [Case(f"{prefix}LVW unseen vs seen", f"seen {seen:.3f}, unseen {uns:.3f}", float(uns - UNSEEN_RATIO * seen),
                  se_of(lambda b: b["LVW/unseen"] - UNSEEN_RATIO * b["LVW/seen"], ["LVW/seen", "LVW/unseen"]))]
    if "ProtoPNet/unseen" in groups:
        p = groups["ProtoPNet/unseen"].mean()
        cases.append(Case(f"{prefix}LVW vs ProtoPNet, unseen", f"{uns:.3f} vs {p:.3f}", float(uns - p),
                          se_of(lambda b: b["LVW/unseen"] - b["ProtoPNet/unseen"], ["LVW/unseen", "ProtoPNet/unseen"])))
    return cases


FAITHFUL_BASE = "Base + Grad-CAM"  # rows of the faithfulness table that are no method's own words
FAITHFUL_RANDOM = "Random map"


def _paired(rows: pd.DataFrame, low: str, high: str) -> tuple[float, float]:
    """Mean and standard error of the per-image paired difference ``rows[high] - rows[low]`` (images x seeds)."""
    diff = (rows[high] - rows[low]).to_numpy(dtype=float)
    se = float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else math.nan
    return float(diff.mean()), se


def claim_faithful(faithfulness: pd.DataFrame | None) -> Claim:
    """Each method's map against a random map on the same model, deletion and insertion (notebook 11).

    A case per dataset and method; its margin is the weaker of the two paired differences in
    standard errors (deletion: random AUC - the method's; insertion: the method's - random's; SEs of
    the per-image differences over images and seeds), so it passes only when both exceed Z SEs.
    """
    claim = Claim("Each method's words are faithful to its own decision (not in the paper)",
                  f"the method's own map beats a random map on its own model on both deletion (lower AUC) and "
                  f"insertion (higher AUC), each by more than {Z:g} SE of the paired per-image difference")
    if faithfulness is None or "random_deletion" not in faithfulness:
        return claim
    rows = faithfulness[~faithfulness["row"].isin([FAITHFUL_BASE, FAITHFUL_RANDOM])]
    for (dataset, method), g in rows.groupby(["dataset", "row"], sort=False):
        d, d_se = _paired(g, "deletion", "random_deletion")  # random's AUC - the method's: > 0 passes
        i, i_se = _paired(g, "random_insertion", "insertion")  # the method's AUC - random's: > 0 passes
        weaker = min((d, d_se), (i, i_se), key=lambda t: t[0] / t[1] if t[1] > 0 else math.copysign(math.inf, t[0]))
        claim.cases.append(Case(
            f"{dataset}, {method}",
            f"deletion {g['deletion'].mean():.3f} vs random {g['random_deletion'].mean():.3f}, insertion "
            f"{g['insertion'].mean():.3f} vs random {g['random_insertion'].mean():.3f} ({len(g)} image-seeds)",
            weaker[0], weaker[1]))
    return claim


def claims_table(
    table1: pd.DataFrame | None = None, sweep: pd.DataFrame | None = None, ksweep: pd.DataFrame | None = None,
    pairs: pd.DataFrame | None = None, unseen: pd.DataFrame | None = None,
    n_test: dict[str, int] | None = None, faithfulness: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Every claim's row: claim, check, evidence (each case's margin ± uncertainty), case counts, verdict.

    ``n_test`` (dataset -> test images) sets the binomial error of accuracies; by default it is read
    from the accuracies themselves (:func:`n_test_images`).
    """
    claims = [
        claim_accuracy_close(table1, n_test), claim_best_interpretable(table1, n_test), claim_iou_every_q(sweep),
        claim_alignment(table1), claim_k(ksweep), claim_similar_share(pairs), claim_unseen(unseen),
        claim_faithful(faithfulness),
    ]
    return pd.DataFrame([c.row() for c in claims])
