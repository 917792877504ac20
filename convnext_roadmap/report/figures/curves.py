"""Validation top-1 during training, read from each run's Lightning metrics.csv."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ...store.record import Record
from .style import new_figure


def metrics_csv(study_dir: Path, record: Record) -> Path | None:
    log_dir = record.log_dir
    if not log_dir:
        return None
    base = Path(study_dir) / log_dir
    if (base / "metrics.csv").is_file():
        return base / "metrics.csv"
    if base.is_dir():  # e.g. log_dir one level above Lightning's version_<k>/
        found = sorted(base.rglob("metrics.csv"))
        return found[-1] if found else None
    return None


def val_curve(path: Path, epochs: Any = None) -> pd.Series | None:
    """val_top1 indexed by epochs trained (fractional when validated within an epoch)."""
    try:
        data = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError):
        return None
    if "val_top1" not in data.columns:
        return None
    val = data[pd.to_numeric(data["val_top1"], errors="coerce").notna()].copy()
    if val.empty:
        return None
    top1 = pd.to_numeric(val["val_top1"]).to_numpy(float)
    if "epoch" in val.columns and val["epoch"].notna().all():
        ep = pd.to_numeric(val["epoch"]).to_numpy(float)
        x = np.empty_like(ep)
        for e in np.unique(ep):  # the k-th of m validations in epoch e sits at e + k/m
            idx = np.flatnonzero(ep == e)
            x[idx] = e + (np.arange(len(idx)) + 1) / len(idx)
    else:  # no epoch column: spread the validations evenly over the run
        total = float(epochs) if isinstance(epochs, (int, float)) and epochs > 0 else len(top1)
        x = (np.arange(len(top1)) + 1) * total / len(top1)
    if np.nanmax(top1) <= 1.0:  # logged as a fraction, not percent
        top1 = top1 * 100.0
    return pd.Series(top1, index=np.round(x, 6)).groupby(level=0).mean()


def draw_curves(frame: pd.DataFrame, curves: dict[str, pd.Series], subtitle: str) -> Figure:
    """Validation top-1 per epoch: full run on top, the second half zoomed below."""
    fig = new_figure((10, 8))
    fig.subplots_adjust(left=0.08, right=0.7, top=0.85, bottom=0.08, hspace=0.32)
    full, zoom = fig.add_subplot(2, 1, 1), fig.add_subplot(2, 1, 2)
    sweep = set(frame.loc[frame["sweep"], "step"])
    cmap = mpl.colormaps["turbo"]  # ordered, yet 16 neighbours stay distinguishable
    n_total = max(len(frame) - 1, 1)
    last_x = max(float(c.index.max()) for c in curves.values())
    tail_vals = []
    for r in frame.itertuples(index=False):
        curve = curves.get(r.step)
        if curve is None:
            continue
        color = cmap(0.05 + 0.9 * r.order / n_total)
        style = dict(
            color=color, lw=1.6, ls="--" if r.step in sweep else "-", marker="o" if len(curve) <= 30 else None, ms=2.5
        )
        full.plot(
            curve.index,
            curve.to_numpy(),
            **style,
            label=f"{r.order:>2}  {r.label}" + (" (sweep)" if r.step in sweep else ""),
        )
        zoom.plot(curve.index, curve.to_numpy(), **style)
        tail_vals.extend(curve[curve.index >= last_x / 2].tolist())
    zoom.set_xlim(last_x / 2 - 0.02 * last_x, last_x * 1.02)
    if tail_vals:
        lo, hi = min(tail_vals), max(tail_vals)
        pad = max(hi - lo, 0.2) * 0.08
        zoom.set_ylim(lo - pad, hi + pad)
    full.set_xlim(0, last_x * 1.02)
    for ax, name in ((full, "whole run"), (zoom, "second half, zoomed")):
        ax.grid(color="#e3e3e3", lw=0.7)
        ax.set_xlabel("epochs trained")
        ax.set_ylabel("validation top-1 (%)")
        ax.set_title(name, loc="left", fontsize=10, fontweight="normal", color="#444444")
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    fig.legend(
        loc="center left",
        bbox_to_anchor=(0.715, 0.5),
        frameon=False,
        title="step (mean over seeds)",
        title_fontproperties={"weight": "bold", "size": 9.5},
    )
    fig.text(0.08, 0.975, "Validation top-1 during training", ha="left", va="top", fontsize=13, fontweight="bold")
    fig.text(
        0.08,
        0.94,
        subtitle + "\nDashed: sweep branch. Colour and number follow the order in the study.",
        ha="left",
        va="top",
        fontsize=8.5,
        color="#444444",
    )
    return fig
