"""Measured top-1 against a cost (GMACs, training throughput), the study's path drawn
parent -> child."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .style import new_figure, phase_color, phase_spans


def _place_labels(
    ax,
    xs: np.ndarray,
    ys: np.ndarray,
    texts: list[str],
    colors: list[str],
    segments: list[tuple[tuple[float, float], tuple[float, float]]],
) -> None:
    """Number each point without overlaps: try offsets around the point, nearest first, and
    keep the one whose box hits the fewest placed labels, markers, error bars and arrows."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    pts = ax.transData.transform(np.column_stack([xs, ys]))
    radius = 6.0 * fig.dpi / 72.0  # marker radius in pixels, with a margin
    obstacles = []  # sampled points of error bars and arrows, in pixels
    for (xa, ya), (xb, yb) in segments:
        a, b = ax.transData.transform([(xa, ya), (xb, yb)])
        count = max(2, int(np.hypot(*(b - a)) / 3))
        obstacles.append(a + np.linspace(0, 1, count)[:, None] * (b - a))
    obstacles = np.concatenate(obstacles) if obstacles else np.empty((0, 2))
    ring = [(7, 4), (7, -13), (-16, 4), (-16, -13), (-4, 10), (-4, -19), (10, -5), (-20, -5)]
    candidates = [(dx * k, dy * k) for k in (1.0, 1.6, 2.3, 3.2) for dx, dy in ring]
    placed: list = []
    ax_box = ax.get_window_extent(renderer)
    for i, (text, color) in enumerate(zip(texts, colors)):
        best, best_cost = None, math.inf
        for rank, (dx, dy) in enumerate(candidates):
            ann = ax.annotate(
                text,
                (xs[i], ys[i]),
                xytext=(dx, dy),
                textcoords="offset points",
                fontsize=8.5,
                fontweight="bold",
                color=color,
                zorder=6,
            )
            box = ann.get_window_extent(renderer)
            ann.remove()
            x0, y0, x1, y1 = box.x0 - 2, box.y0 - 2, box.x1 + 2, box.y1 + 2
            cost = 20.0 * sum(box.overlaps(b) for b in placed)
            near = (
                (pts[:, 0] > x0 - radius)
                & (pts[:, 0] < x1 + radius)
                & (pts[:, 1] > y0 - radius)
                & (pts[:, 1] < y1 + radius)
            )
            cost += 10.0 * near.sum()
            if len(obstacles):
                cost += (
                    1.0
                    * (
                        (obstacles[:, 0] > x0)
                        & (obstacles[:, 0] < x1)
                        & (obstacles[:, 1] > y0)
                        & (obstacles[:, 1] < y1)
                    ).sum()
                )
            if not (ax_box.x0 <= x0 and x1 <= ax_box.x1 and ax_box.y0 <= y0 and y1 <= ax_box.y1):
                cost += 50.0
            cost += 0.05 * rank  # prefer near and to the right
            if cost < best_cost:
                best, best_cost = (dx, dy, box), cost
            if cost < 1.0:
                break
        dx, dy, box = best
        far = math.hypot(dx, dy) > 16
        ax.annotate(
            text,
            (xs[i], ys[i]),
            xytext=(dx, dy),
            textcoords="offset points",
            fontsize=8.5,
            fontweight="bold",
            color=color,
            zorder=6,
            arrowprops=dict(arrowstyle="-", color="#999999", lw=0.6, shrinkA=0, shrinkB=5) if far else None,
        )
        placed.append(box)


def draw_scatter(frame: pd.DataFrame, xcol: str, xlabel: str, title: str, subtitle: str) -> Figure:
    """Measured top-1 against a cost, with the roadmap's path drawn parent -> child."""
    fig = new_figure((10, 8))
    fig.subplots_adjust(left=0.09, right=0.68, top=0.88, bottom=0.09)
    ax = fig.add_subplot()
    sweep = set(frame.loc[frame["sweep"], "step"])
    ok = frame[(frame["status"] == "done") & frame[xcol].notna() & frame["top1_mean"].notna()]
    pos = {r.step: (getattr(r, xcol), r.top1_mean) for r in ok.itertuples(index=False)}
    parents = dict(zip(frame["step"], frame["parent"]))
    all_parents = parents

    # Path of the roadmap: each step linked to its nearest measured ancestor.
    segments = []
    for slug, (x, y) in pos.items():
        anc = all_parents.get(slug)
        while anc is not None and anc not in pos:
            anc = all_parents.get(anc)
        if anc is None:
            continue
        direct = anc == all_parents.get(slug)
        segments.append((pos[anc], (x, y)))
        ax.annotate(
            "",
            xy=(x, y),
            xytext=pos[anc],
            zorder=1,
            arrowprops=dict(
                arrowstyle="-|>",
                color="#b0b0b0",
                lw=1.0,
                ls="--" if (slug in sweep or not direct) else "-",
                shrinkA=6,
                shrinkB=6,
                mutation_scale=10,
            ),
        )

    for r in ok.itertuples(index=False):
        color = phase_color(r.phase)
        is_sweep = r.step in sweep
        x = getattr(r, xcol)
        if not math.isnan(r.top1_std):
            segments.append(((x, r.top1_mean - r.top1_std), (x, r.top1_mean + r.top1_std)))
        ax.errorbar(
            x,
            r.top1_mean,
            yerr=0 if math.isnan(r.top1_std) else r.top1_std,
            fmt="o",
            ms=8,
            color=color,
            mfc="white" if is_sweep else color,
            mec=color,
            mew=1.8,
            ecolor=color,
            elinewidth=1.1,
            capsize=3,
            zorder=4,
        )

    # Limits first (with margin for the labels), then labels, so their boxes are final.
    if len(ok):
        xv, yv = ok[xcol].to_numpy(float), ok["top1_mean"].to_numpy(float)
        ye = ok["top1_std"].fillna(0).to_numpy(float)
        xspan = max(xv.max() - xv.min(), abs(xv.max()) * 0.05, 1e-9)
        yspan = max((yv + ye).max() - (yv - ye).min(), 0.2)
        ax.set_xlim(xv.min() - 0.1 * xspan, xv.max() + 0.1 * xspan)
        ax.set_ylim((yv - ye).min() - 0.1 * yspan, (yv + ye).max() + 0.1 * yspan)
        _place_labels(ax, xv, yv, [str(i) for i in ok["order"]], [phase_color(p) for p in ok["phase"]], segments)

    ax.grid(color="#e3e3e3", lw=0.7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("measured top-1 accuracy (%), mean ± std over seeds")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)

    # Key: index -> step, grouped by phase; steps without a result are listed greyed out.
    handles, bold, grey = [], [], []
    for phase, first, last in phase_spans(frame):
        bold.append(len(handles))
        handles.append(Line2D([], [], ls="none", label=phase))
        for r in frame.iloc[first : last + 1].itertuples(index=False):
            color = phase_color(r.phase)
            shown = r.step in pos
            tag = "" if shown else {"failed": "  (failed)", "missing": "  (not run)"}.get(r.status, "  (no result)")
            if not shown:
                grey.append(len(handles))
            handles.append(
                Line2D(
                    [],
                    [],
                    marker="o" if shown else "x",
                    ls="none",
                    ms=6,
                    color=color if shown else "#aaaaaa",
                    mfc="white" if r.step in sweep else None,
                    mew=1.5,
                    label=f"{r.order:>2}  {r.label}" + (" (sweep)" if r.step in sweep else "") + tag,
                )
            )
    leg = fig.legend(
        handles=handles,
        loc="center left",
        bbox_to_anchor=(0.695, 0.48),
        frameon=False,
        handletextpad=0.4,
        labelspacing=0.42,
        title="step",
        title_fontproperties={"weight": "bold", "size": 9.5},
    )
    leg._legend_box.align = "left"
    for k, txt in enumerate(leg.get_texts()):
        if k in bold:
            txt.set_fontweight("bold")
            txt.set_color(phase_color(txt.get_text()))
        elif k in grey:
            txt.set_color("#999999")
    fig.text(0.09, 0.975, title, ha="left", va="top", fontsize=13, fontweight="bold")
    fig.text(
        0.09,
        0.94,
        subtitle + "\nArrows: parent → child (dashed: sweep branch or "
        "via an unmeasured step); open markers: sweep branch. Numbers: order in the study.",
        ha="left",
        va="top",
        fontsize=8.5,
        color="#444444",
    )
    return fig
