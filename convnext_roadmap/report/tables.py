"""A study's tables: results.csv (one row per step and budget), runs.csv (one row per run),
results.md (the summary as a markdown table with its one-line reading, one per budget) and,
for a study of several budgets, budget.csv (report/budget.py)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ..store.files import atomic_write_text
from ..store.record import CHANCE_MARGIN
from ..store.records import current_records
from .budget import budget_table
from .figures.style import study_description
from .summary import load_records, runs_table, study_budgets, study_steps, summarize, summary_line


def _fmt(value: float, spec: str = ".2f", signed: bool = False, empty: str = "—") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return empty
    return format(value, ("+" if signed else "") + spec)


def delta_cell(r) -> str:
    """'+1.23 [+0.40, +2.06] ✓' (resolved) or '-0.31 [-1.50, +0.88] ?' (unresolved)."""
    if math.isnan(r.delta_vs_parent):
        return "—"
    text = _fmt(r.delta_vs_parent, signed=True)
    if math.isnan(r.delta_vs_parent_ci_low):
        return text + f" (n={r.n_pairs})"
    return (
        f"{text} [{_fmt(r.delta_vs_parent_ci_low, signed=True)}, {_fmt(r.delta_vs_parent_ci_high, signed=True)}] "
        + ("✓" if r.resolved else "?")
    )


def markdown_table(df: pd.DataFrame) -> str:
    """The summary as markdown: one table per budget, under a heading when there are several."""
    budgets = sorted(df["budget_epochs"].unique()) if "budget_epochs" in df and len(df) else []
    if len(budgets) <= 1:
        return budget_markdown_table(df)
    return "\n".join(
        f"### {b} epoch{'' if b == 1 else 's'}\n\n" + budget_markdown_table(df[df["budget_epochs"] == b])
        for b in budgets
    )


def budget_markdown_table(df: pd.DataFrame) -> str:
    """The summary as a GitHub markdown table, padded so it also reads in a terminal, then
    the study's one-line reading. Deltas are paired (child - parent on shared seeds) with
    their 95% t interval: ✓ resolved (the interval excludes 0), ? unresolved."""
    width = df["width_mult"].dropna()
    params_head = f"params (×{width.iloc[0]:g})" if len(width) and width.nunique() == 1 else "params"
    header = [
        "#",
        "step",
        "label",
        "top-1 % ± std (n)",
        "Δ parent [95% CI]",
        "P(better)",
        "paper top-1",
        "paper Δ",
        params_head,
        "GMACs@224 (×1)",
        "img/s train",
    ]
    right = [True, False, False, True, True, True, True, True, True, True, True]
    rows = []
    for r in df.itertuples(index=False):
        if r.status == "done" and not math.isnan(r.top1_mean):
            acc = f"{r.top1_mean:.2f}" + (f" ± {r.top1_std:.2f}" if r.n_seeds >= 2 else "") + f" ({r.n_seeds})"
            if r.n_did_not_learn:
                acc += f" ⚠ {r.n_did_not_learn} did not learn"
        else:
            acc = {"failed": "failed", "missing": "not run"}.get(r.status, "no top-1")
        label = str(r.label) + (" (sweep)" if r.sweep else "") + (" (reference)" if r.reference else "")
        index = "" if r.step_index is pd.NA or pd.isna(r.step_index) else str(r.step_index)
        rows.append(
            [
                index,
                str(r.step),
                label,
                acc,
                delta_cell(r),
                _fmt(r.prob_improvement_vs_parent),
                _fmt(r.paper_top1),
                _fmt(r.paper_delta_vs_parent, signed=True),
                _fmt(r.params_m) + ("" if math.isnan(r.params_m) else "M"),
                _fmt(r.gmacs_224),
                _fmt(r.train_throughput, ".0f"),
            ]
        )
    cells = [[c.replace("|", "\\|") for c in row] for row in [header] + rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return (
            "| "
            + " | ".join(c.rjust(w) if al else c.ljust(w) for c, w, al in zip(row, widths, right, strict=True))
            + " |"
        )

    sep = (
        "|"
        + "|".join("-" * (w + 1) + ":" if al else ":" + "-" * (w + 1) for w, al in zip(widths, right, strict=True))
        + "|"
    )
    table = "\n".join([line(cells[0]), sep] + [line(row) for row in cells[1:]]) + "\n"
    return table + f"\n{summary_line(df)}.\n"


def write_tables(study_dir: Path) -> pd.DataFrame:
    """Write results.csv, runs.csv and results.md into the study directory; return the
    summary frame. Only the records of the study's current config are used."""
    study_dir = Path(study_dir)
    study_dir.mkdir(parents=True, exist_ok=True)
    records = load_records(study_dir)
    steps = study_steps(study_dir, records)
    frame = summarize(records, steps, study_budgets(study_dir, records))
    atomic_write_text(study_dir / "results.csv", frame.to_csv(index=False))
    atomic_write_text(study_dir / "runs.csv", runs_table(records).to_csv(index=False))
    if frame["budget_epochs"].nunique() > 1:
        atomic_write_text(study_dir / "budget.csv", budget_table(records, steps, frame).to_csv(index=False))
    markdown = f"{study_description(records)}\n\n{markdown_table(frame)}"
    if frame["n_did_not_learn"].any():
        markdown += (
            f"\n⚠ did not learn: a run whose top-1 ends within {CHANCE_MARGIN:g} points of chance "
            "(100 / classes); its step's numbers say nothing about the change.\n"
        )
    others = current_records(study_dir)[2]
    if others:
        markdown += (
            f"\n{others} record(s) of other configs of this study are kept in runs/ and left out of this table.\n"
        )
    atomic_write_text(study_dir / "results.md", markdown)
    return frame
