"""Tables and figures of a study, computed from its run records alone.

Every finished or failed (step, seed) run leaves one JSON record in
``results/<study>/runs/``; the study's manifest (``study.json``) says which records are of
its current config and what its steps are. This package never trains anything: it reads
those records (and the Lightning ``metrics.csv`` each one points to), so the report can be
rebuilt at any time and always agrees with the records.

    from convnext_roadmap.report import draw_figures, write_tables
    frame = write_tables(Path("results/cpu"))          # results.csv, runs.csv, results.md
    draw_figures(Path("results/cpu"), Path("plots/cpu"))

Modules: stats (paired deltas, scipy), summary (one row per step), tables, and the figures
(figures/: roadmap, scatter, curves, budget; style holds what they share), compare (studies side
by side), listing (the roadmap before training).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from convnext_steps import list_roadmaps, list_steps

from ..store.manifest import read_manifest
from .budget import budget_table
from .figures.budget import draw_budget
from .figures.curves import draw_curves, metrics_csv, val_curve
from .figures.roadmap import draw_roadmap
from .figures.scatter import draw_scatter
from .figures.style import figure_context, save, study_description
from .stats import paired_delta, prob_improvement, seeds_to_resolve
from .summary import (
    RUN_COLUMNS,
    SUMMARY_COLUMNS,
    load_records,
    runs_table,
    seed_guidance,
    study_budgets,
    study_steps,
    summarize,
    summary_line,
)
from .tables import markdown_table, write_tables

__all__ = [
    "SUMMARY_COLUMNS",
    "RUN_COLUMNS",
    "FIGURE_NAMES",
    "load_records",
    "study_steps",
    "summarize",
    "summary_line",
    "seed_guidance",
    "runs_table",
    "markdown_table",
    "write_tables",
    "draw_figures",
    "study_figures",
    "paired_delta",
    "prob_improvement",
    "seeds_to_resolve",
]

FIGURE_NAMES = ("roadmap.png", "roadmap.svg", "accuracy_vs_gmacs.png", "accuracy_vs_throughput.png", "curves.png")


def figure_title(study_dir: Path, frame: pd.DataFrame) -> str:
    """Figure 2's title when the study is a whole built-in roadmap, else the study's name
    and description."""
    chain = list(frame.loc[~frame["reference"], "step"])
    for name in list_roadmaps():
        steps = list_steps(name)
        if chain == [s.slug for s in steps]:
            return f"The {steps[0].label} → {steps[-1].label.split('(')[-1].rstrip(')')} roadmap, re-run"
    manifest = read_manifest(study_dir) or {}
    description = (manifest.get("config") or {}).get("description")
    return f"Study “{study_dir.name}”" + (f": {description}" if description else "")


def draw_figures(study_dir: Path, plots_dir: Path) -> list[Path]:
    """Draw the study's figures into plots_dir (atomically) and return the written paths:
    roadmap.png/.svg always (unrun steps say so), then, when runs have finished,
    accuracy_vs_gmacs.png, accuracy_vs_throughput.png and curves.png. A study of several
    budgets draws each of them per budget (`roadmap_<b>ep.png`, ...) and budget.png."""
    study_dir, plots_dir = Path(study_dir), Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    with figure_context():
        return save_figures(study_figures(study_dir), plots_dir)


def save_figures(figures: list[tuple[str, Figure]], plots_dir: Path) -> list[Path]:
    """study_figures' figures written into plots_dir: each as .png, the roadmap also as .svg."""
    written: list[Path] = []
    with figure_context():
        for stem, fig in figures:
            for ext in (".png", ".svg") if stem.startswith("roadmap") else (".png",):
                written.append(save(fig, Path(plots_dir) / f"{stem}{ext}"))
    return written


def study_figures(study_dir: Path) -> list[tuple[str, Figure]]:
    """The study's figures, unsaved, as (file name without extension, figure): what
    draw_figures writes (roadmap is written as .png and .svg)."""
    study_dir = Path(study_dir)
    records = load_records(study_dir)
    steps = study_steps(study_dir, records)
    budgets = study_budgets(study_dir, records)
    frame = summarize(records, steps, budgets)
    figures: list[tuple[str, Figure]] = []
    with figure_context():
        for budget in budgets:
            part = frame[frame["budget_epochs"] == budget].reset_index(drop=True)
            suffix = "" if len(budgets) == 1 else f"_{budget}ep"
            figures += _budget_figures(
                study_dir, part, [r for r in records if r.budget == budget], suffix, len(budgets) > 1
            )
        if len(budgets) > 1:
            title = figure_title(study_dir, frame[frame["budget_epochs"] == budgets[0]])
            figures.append(
                ("budget", draw_budget(frame, budget_table(records, steps, frame), title, study_description(records)))
            )
    return figures


def _budget_figures(
    study_dir: Path, frame: pd.DataFrame, records: list, suffix: str, several: bool
) -> list[tuple[str, Figure]]:
    """The figures of one budget of a study."""
    subtitle = study_description(records)
    title = figure_title(study_dir, frame)
    if several:
        budget = int(frame["budget_epochs"].iloc[0])
        title += f" — {budget} epoch{'' if budget == 1 else 's'}"
    figures = [(f"roadmap{suffix}", draw_roadmap(frame, records, title, subtitle + "\n" + summary_line(frame)))]
    if not (frame["status"] == "done").any():
        return figures
    for xcol, xlabel, name, heading in (
        (
            "gmacs_224",
            "GMACs at 224 × 224 px, width ×1 (multiply-adds, ×10⁹)",
            "accuracy_vs_gmacs",
            "Accuracy vs compute",
        ),
        (
            "train_throughput",
            "measured training throughput (images / s)",
            "accuracy_vs_throughput",
            "Accuracy vs training speed",
        ),
    ):
        if frame.loc[frame["status"] == "done", xcol].notna().any():
            figures.append((f"{name}{suffix}", draw_scatter(frame, xcol, xlabel, heading, subtitle)))
    curves: dict[str, pd.Series] = {}
    for slug in frame.loc[frame["status"] == "done", "step"]:
        per_seed = []
        for record in records:
            if record.step == slug and record.done:
                path = metrics_csv(study_dir, record)
                curve = val_curve(path, record.epochs) if path else None
                if curve is not None:
                    per_seed.append(curve)
        if per_seed:  # mean over the seeds at each validation point they share
            curves[slug] = pd.concat(per_seed, axis=1).mean(axis=1).sort_index()
    if curves:
        figures.append((f"curves{suffix}", draw_curves(frame, curves, subtitle)))
    return figures
