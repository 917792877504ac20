"""Does a change's verdict depend on the training budget? For a study trained at several
budgets (`budgets:`), the change of each step's Δ against its parent between budgets, and the
study's agreement with the paper at each budget (`results/<study>/budget.csv`).

The change of Δ is paired by seed: for seed s, d_s = (child - parent at budget b) - (child -
parent at the smallest budget), over the seeds that have all four runs; its mean, 95% t
interval (stats.t_interval) and whether the interval excludes 0. Agreement with the paper at
a budget: how many changes with a Table 10 Δ have its sign, and Spearman's rank correlation
between the measured and the paper's Δs, with a percentile bootstrap 95% interval over the
changes (scipy.stats.bootstrap, paired, seeded).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy import stats

from ..store.record import Record
from .stats import BOOTSTRAP_RESAMPLES, CONFIDENCE, t_interval
from .summary import comparison_parent

# The columns of budget.csv, in order: `kind` says which of the two kinds of row it is.
BUDGET_COLUMNS: list[str] = [
    "kind",
    "budget_epochs",
    "from_budget_epochs",
    "step",
    "step_index",
    "label",
    "parent",
    "delta_from",
    "delta_to",
    "delta_change",
    "delta_change_ci_low",
    "delta_change_ci_high",
    "resolved",
    "n_pairs",
    "paper_delta_vs_parent",
    "n_changes",
    "with_paper_sign",
    "resolved_with_paper_sign",
    "spearman_rho",
    "spearman_ci_low",
    "spearman_ci_high",
]


def per_seed_deltas(records: list[Record], steps: list[dict]) -> dict[tuple[str, int], dict[int, float]]:
    """(step, budget) -> {seed: child - parent} for every step with its parent in the study."""
    top1: dict[tuple[str, int], dict[int, float]] = {}
    for r in records:
        if r.done:
            top1.setdefault((r.step, r.budget), {})[r.seed] = float(r.top1)
    budgets = sorted({b for _, b in top1})
    deltas: dict[tuple[str, int], dict[int, float]] = {}
    for step in steps:
        parent = comparison_parent(step, steps)
        if not parent or step.get("reference"):
            continue
        for b in budgets:
            child, base = top1.get((step["slug"], b), {}), top1.get((parent, b), {})
            deltas[(step["slug"], b)] = {s: child[s] - base[s] for s in sorted(set(child) & set(base))}
    return deltas


def delta_changes(records: list[Record], steps: list[dict]) -> pd.DataFrame:
    """One row per change and budget above the smallest: Δ at the smallest budget, Δ at this one,
    and the paired change between them."""
    deltas = per_seed_deltas(records, steps)
    budgets = sorted({b for _, b in deltas})
    labels = {s["slug"]: s.get("label", s["slug"]) for s in steps}
    paper = {s["slug"]: s.get("paper_top1") for s in steps}
    rows = []
    for step in steps:
        slug = step["slug"]
        if (slug, budgets[0] if budgets else None) not in deltas:
            continue
        parent = comparison_parent(step, steps)
        first = deltas[(slug, budgets[0])]
        paper_delta = (
            (paper[slug] - paper[parent]) if paper.get(slug) is not None and paper.get(parent) is not None else math.nan
        )
        for b in budgets[1:]:
            later = deltas[(slug, b)]
            seeds = sorted(set(first) & set(later))
            d = [later[s] - first[s] for s in seeds]
            low, high = t_interval(d)
            rows.append(
                {
                    "kind": "change",
                    "budget_epochs": b,
                    "from_budget_epochs": budgets[0],
                    "step": slug,
                    "step_index": step.get("index"),
                    "label": labels[slug],
                    "parent": parent,
                    "delta_from": float(np.mean(list(first.values()))) if first else math.nan,
                    "delta_to": float(np.mean(list(later.values()))) if later else math.nan,
                    "delta_change": float(np.mean(d)) if d else math.nan,
                    "delta_change_ci_low": low,
                    "delta_change_ci_high": high,
                    "resolved": None if math.isnan(low) else bool(low > 0 or high < 0),
                    "n_pairs": len(seeds),
                    "paper_delta_vs_parent": paper_delta,
                }
            )
    return pd.DataFrame(rows, columns=BUDGET_COLUMNS)


def spearman_interval(measured: np.ndarray, paper: np.ndarray, seed: int = 0) -> tuple[float, float, float]:
    """Spearman's rho and its percentile bootstrap interval over the (measured, paper) pairs;
    NaN below 3 pairs (and for the interval, below 4)."""
    if len(measured) < 3:
        return math.nan, math.nan, math.nan
    rho = float(stats.spearmanr(measured, paper).statistic)
    if len(measured) < 4:
        return rho, math.nan, math.nan

    def statistic(x: np.ndarray, y: np.ndarray) -> float:
        with warnings.catch_warnings():  # a resample of constant values has no rank correlation
            warnings.simplefilter("ignore")
            value = stats.spearmanr(x, y).statistic
        return 0.0 if not np.isfinite(value) else float(value)

    result = stats.bootstrap(
        (measured, paper),
        statistic,
        paired=True,
        vectorized=False,
        method="percentile",
        confidence_level=CONFIDENCE,
        n_resamples=BOOTSTRAP_RESAMPLES,
        rng=np.random.default_rng(seed),
    )
    return rho, float(result.confidence_interval.low), float(result.confidence_interval.high)


def paper_agreement(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per budget of a summary (summary.summarize_budgets): of the changes with a
    paper Δ and a measured one, how many have the paper's sign (and are resolved), and the
    Spearman correlation of the measured Δs with the paper's."""
    rows = []
    for budget, part in frame.groupby("budget_epochs", sort=True):
        both = part[~part["reference"] & part["delta_vs_parent"].notna() & part["paper_delta_vs_parent"].notna()]
        measured, paper = both["delta_vs_parent"].to_numpy(float), both["paper_delta_vs_parent"].to_numpy(float)
        same = np.sign(measured) == np.sign(paper)
        resolved = both["resolved"].fillna(False).astype(bool).to_numpy()
        rho, low, high = spearman_interval(measured, paper)
        rows.append(
            {
                "kind": "agreement",
                "budget_epochs": int(budget),
                "n_changes": len(both),
                "with_paper_sign": int(same.sum()),
                "resolved_with_paper_sign": int((same & resolved).sum()),
                "spearman_rho": rho,
                "spearman_ci_low": low,
                "spearman_ci_high": high,
            }
        )
    return pd.DataFrame(rows, columns=BUDGET_COLUMNS)


def budget_table(records: list[Record], steps: list[dict], frame: pd.DataFrame) -> pd.DataFrame:
    """budget.csv: the change rows, then the agreement rows."""
    parts = [part for part in (delta_changes(records, steps), paper_agreement(frame)) if not part.empty]
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=BUDGET_COLUMNS)
    return table.astype(
        {
            "budget_epochs": "Int64",
            "from_budget_epochs": "Int64",
            "step_index": "Int64",
            "n_pairs": "Int64",
            "n_changes": "Int64",
            "with_paper_sign": "Int64",
            "resolved_with_paper_sign": "Int64",
        }
    )
