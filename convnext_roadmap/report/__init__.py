"""Tables and figures of a study, computed from its run records alone.

Every finished or failed (step, seed) run leaves one JSON record in
``results/<study>/runs/``; the study's manifest (``study.json``) says which records are of
its current config and what its steps are. This package never trains anything: it reads
those records (and the Lightning ``metrics.csv`` each one points to), so the report can be
rebuilt at any time and always agrees with the records.

    from roadmap.report import draw_figures, write_tables
    frame = write_tables(Path("results/cpu"))          # results.csv, runs.csv, results.md
    draw_figures(Path("results/cpu"), Path("plots/cpu"))

Modules: stats (paired deltas, scipy), summary (one row per step), tables, and the figures
(roadmap_figure, scatter, curves; style holds what they share).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl
import pandas as pd

from convnext_steps import list_roadmaps, list_steps

from ..records import read_manifest
from .curves import draw_curves, metrics_csv, val_curve
from .roadmap_figure import draw_roadmap
from .scatter import draw_scatter
from .stats import paired_delta, prob_improvement, seeds_to_resolve
from .style import STYLE, save, study_description
from .summary import (RUN_COLUMNS, SUMMARY_COLUMNS, load_records, runs_table, seed_guidance, study_steps, summarize,
                      summary_line)
from .tables import markdown_table, write_tables

__all__ = ["SUMMARY_COLUMNS", "RUN_COLUMNS", "FIGURE_NAMES", "load_records", "study_steps", "summarize",
           "summary_line", "seed_guidance", "runs_table", "markdown_table", "write_tables", "draw_figures", "paired_delta",
           "prob_improvement", "seeds_to_resolve"]

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
    accuracy_vs_gmacs.png, accuracy_vs_throughput.png and curves.png."""
    study_dir, plots_dir = Path(study_dir), Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    records = load_records(study_dir)
    frame = summarize(records, study_steps(study_dir, records))
    subtitle = study_description(records)
    written: list[Path] = []
    with mpl.rc_context(STYLE):
        fig = draw_roadmap(frame, records, figure_title(study_dir, frame), subtitle + "\n" + summary_line(frame))
        written += [save(fig, plots_dir / "roadmap.png"), save(fig, plots_dir / "roadmap.svg")]
        if not (frame["status"] == "done").any():
            return written
        for xcol, xlabel, name, heading in (
                ("gmacs_224", "GMACs at 224 × 224 px, width ×1 (multiply-adds, ×10⁹)", "accuracy_vs_gmacs.png",
                 "Accuracy vs compute"),
                ("train_throughput", "measured training throughput (images / s)", "accuracy_vs_throughput.png",
                 "Accuracy vs training speed")):
            if frame.loc[frame["status"] == "done", xcol].notna().any():
                written.append(save(draw_scatter(frame, xcol, xlabel, heading, subtitle), plots_dir / name))
        curves: dict[str, pd.Series] = {}
        for slug in frame.loc[frame["status"] == "done", "step"]:
            per_seed = []
            for record in records:
                if record["step"] == slug and record["status"] == "done":
                    path = metrics_csv(study_dir, record)
                    curve = val_curve(path, record.get("epochs")) if path else None
                    if curve is not None:
                        per_seed.append(curve)
            if per_seed:  # mean over the seeds at each validation point they share
                curves[slug] = pd.concat(per_seed, axis=1).mean(axis=1).sort_index()
        if curves:
            written.append(save(draw_curves(frame, curves, subtitle), plots_dir / "curves.png"))
    return written
