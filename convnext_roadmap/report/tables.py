"""A study's tables: results.csv (one row per step), runs.csv (one row per run) and
results.md (the summary as a markdown table with its one-line reading)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ..records import atomic_write_text, current_records
from .summary import load_records, runs_table, study_steps, summarize, summary_line


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
    return (f"{text} [{_fmt(r.delta_vs_parent_ci_low, signed=True)}, {_fmt(r.delta_vs_parent_ci_high, signed=True)}] "
            + ("✓" if r.resolved else "?"))


def markdown_table(df: pd.DataFrame) -> str:
    """The summary as a GitHub markdown table, padded so it also reads in a terminal, then
    the study's one-line reading. Deltas are paired (child - parent on shared seeds) with
    their 95% t interval: ✓ resolved (the interval excludes 0), ? unresolved."""
    width = df["width_mult"].dropna()
    params_head = f"params (×{width.iloc[0]:g})" if len(width) and width.nunique() == 1 else "params"
    header = ["#", "step", "label", "top-1 % ± std (n)", "Δ parent [95% CI]", "P(better)", "paper top-1",
              "paper Δ", params_head, "GMACs@224 (×1)", "img/s train"]
    right = [True, False, False, True, True, True, True, True, True, True, True]
    rows = []
    for r in df.itertuples(index=False):
        if r.status == "done" and not math.isnan(r.top1_mean):
            acc = f"{r.top1_mean:.2f}" + (f" ± {r.top1_std:.2f}" if r.n_seeds >= 2 else "") + f" ({r.n_seeds})"
        else:
            acc = {"failed": "failed", "missing": "not run"}.get(r.status, "no top-1")
        label = str(r.label) + (" (sweep)" if r.sweep else "") + (" (reference)" if r.reference else "")
        index = "" if r.step_index is pd.NA or pd.isna(r.step_index) else str(r.step_index)
        rows.append([index, str(r.step), label, acc, delta_cell(r), _fmt(r.prob_improvement_vs_parent),
                     _fmt(r.paper_top1), _fmt(r.paper_delta_vs_parent, signed=True),
                     _fmt(r.params_m) + ("" if math.isnan(r.params_m) else "M"), _fmt(r.gmacs_224),
                     _fmt(r.train_throughput, ".0f")])
    cells = [[c.replace("|", "\\|") for c in row] for row in [header] + rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return "| " + " | ".join(c.rjust(w) if al else c.ljust(w) for c, w, al in zip(row, widths, right)) + " |"

    sep = "|" + "|".join("-" * (w + 1) + ":" if al else ":" + "-" * (w + 1) for w, al in zip(widths, right)) + "|"
    table = "\n".join([line(cells[0]), sep] + [line(row) for row in cells[1:]]) + "\n"
    return table + f"\n{summary_line(df)}.\n"


def write_tables(study_dir: Path) -> pd.DataFrame:
    """Write results.csv, runs.csv and results.md into the study directory; return the
    summary frame. Only the records of the study's current config are used."""
    study_dir = Path(study_dir)
    study_dir.mkdir(parents=True, exist_ok=True)
    records = load_records(study_dir)
    frame = summarize(records, study_steps(study_dir, records))
    atomic_write_text(study_dir / "results.csv", frame.to_csv(index=False))
    atomic_write_text(study_dir / "runs.csv", runs_table(records).to_csv(index=False))
    markdown = markdown_table(frame)
    others = current_records(study_dir)[2]
    if others:
        markdown += (f"\n{others} record(s) of other configs of this study are kept in runs/ and left out of "
                     "this table.\n")
    atomic_write_text(study_dir / "results.md", markdown)
    return frame
