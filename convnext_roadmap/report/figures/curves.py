"""Validation top-1 during training, read from each run's Lightning metrics.csv."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ...store.record import Record
from .style import fit_text, new_figure, step_keys, text_width


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
    """Validation top-1 per epoch: full run on top, the second half zoomed below. Steps are
    numbered and coloured as in roadmap.png (style.step_keys); each curve of the zoomed panel
    ends in its number."""
    keys = step_keys(frame)
    sweep = set(frame.loc[frame["sweep"], "step"])
    drawn = [r for r in frame.itertuples(index=False) if r.step in curves]
    height = max(8.0, 2.0 + 0.205 * len(drawn))
    fig = new_figure((10, height))
    subtitle = fit_text(fig, subtitle, 0.9, 8.5, lines=2)
    note = "Colour and number as in roadmap.png" + ("; dashed: sweep branch" if sweep & set(curves) else "")
    head = 0.55 + (subtitle.count("\n") + 2) * 0.145 + 0.25
    fig.subplots_adjust(left=0.08, right=0.66, top=1 - head / height, bottom=0.6 / height, hspace=0.32)
    full, zoom = fig.add_subplot(2, 1, 1), fig.add_subplot(2, 1, 2)
    last_x = max(float(c.index.max()) for c in curves.values())
    tail_vals, ends = [], []
    unlearned = set(frame.loc[frame["n_did_not_learn"] > 0, "step"]) & set(curves)
    if len(unlearned) == len(drawn):  # the zoom leaves out steps with a run at chance level, unless all are
        unlearned = set()
    room = 0.27  # the key's text, right of its markers
    for r in drawn:
        curve = curves[r.step]
        key = keys[r.step]
        style = dict(
            color=key.color,
            lw=1.6,
            ls="--" if r.step in sweep else "-",
            marker="o" if len(curve) <= 30 else None,
            ms=2.5,
        )
        number = f"{key.number:>2}  "
        label = fit_text(
            fig,
            f"{r.label}"
            + (" (sweep)" if r.step in sweep else "")
            + (" (did not learn: off the zoom)" if r.step in unlearned else ""),
            room - 0.025 - text_width(fig, number, 8.5),
            8.5,
        )
        full.plot(curve.index, curve.to_numpy(), **style, label=number + label.replace("\n", " "))
        zoom.plot(curve.index, curve.to_numpy(), **style)
        if r.step not in unlearned:
            tail_vals.extend(curve[curve.index >= last_x / 2].tolist())
            ends.append((float(curve.index[-1]), float(curve.iloc[-1]), key))
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
    _end_numbers(zoom, ends)
    fig.legend(
        loc="center left",
        bbox_to_anchor=(0.7, 0.5),
        frameon=False,
        handlelength=2.2,
        title="step (mean over seeds)",
        title_fontproperties={"weight": "bold", "size": 9.5},
    )
    fig.text(
        0.08, 1 - 0.2 / height, "Validation top-1 during training", ha="left", va="top", fontsize=13, fontweight="bold"
    )
    fig.text(0.08, 1 - 0.5 / height, subtitle + "\n" + note + ".", ha="left", va="top", fontsize=8.5, color="#444444")
    return fig


def _end_numbers(ax, ends: list) -> None:
    """Each curve's number just right of its last point in the zoomed panel, pushed apart
    vertically so that none covers another (up to 24 curves; more would only crowd)."""
    if not ends or len(ends) > 24:
        return
    fig = ax.figure
    gap = 8.5 * fig.dpi / 72.0  # one line of 7.5 pt text, in pixels
    pix = [ax.transData.transform((x, y)) for x, y, _ in ends]
    box = ax.get_window_extent()
    order = sorted(range(len(ends)), key=lambda i: pix[i][1])
    placed: list[float] = []
    for i in order:  # bottom to top, each at least a line above the one below
        placed.append(max(pix[i][1], placed[-1] + gap) if placed else pix[i][1])
    top = box.y1 - gap / 2
    for k in range(len(placed) - 1, -1, -1):  # then down from the top, where the top ones ran out of the panel
        placed[k] = min(placed[k], top if k == len(placed) - 1 else placed[k + 1] - gap)
    for i, y in zip(order, placed, strict=True):
        x, value, key = ends[i]
        ax.annotate(
            key.number,
            (x, value),
            xytext=(5, (y - pix[i][1]) * 72.0 / fig.dpi),
            textcoords="offset points",
            ha="left",
            va="center",
            fontsize=7.5,
            fontweight="bold",
            color=key.color,
            annotation_clip=False,
        )
