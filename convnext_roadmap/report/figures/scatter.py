"""Measured top-1 against a cost (GMACs, training throughput), the study's path drawn
parent -> child. Steps are numbered and coloured as in roadmap.png (style.step_keys); points
that would cover each other (equal GMACs) are spread sideways by a few pixels, which the figure
says; each number sits nearer its own point than any other, with a leader line when it had to
move away."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .style import fit_text, new_figure, phase_colors, phase_spans, step_keys, text_width

DODGE_PX = 11.0  # sideways step between points that would cover each other, in pixels


def _place_labels(
    ax,
    xs: np.ndarray,
    ys: np.ndarray,
    texts: list[str],
    colors: list[str],
    segments: list[tuple[tuple[float, float], tuple[float, float]]],
) -> None:
    """Number each point without overlaps: try offsets around the point, nearest first, and
    keep the one whose box hits the fewest placed labels, markers, error bars and arrows and
    that is nearer its own point than any other; a label moved away gets a leader line."""
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
    candidates = [(dx * k, dy * k) for k in (1.0, 1.6, 2.3, 3.2, 4.5) for dx, dy in ring]
    placed: list = []
    ax_box = ax.get_window_extent(renderer)
    for i, (text, color) in enumerate(zip(texts, colors, strict=True)):
        best, best_cost = None, math.inf
        others = np.delete(pts, i, axis=0)
        # the tried placements and the kept one: the same label, only its offset differs
        style = dict(textcoords="offset points", fontsize=8.5, fontweight="bold", color=color, zorder=6)
        for rank, (dx, dy) in enumerate(candidates):
            ann = ax.annotate(text, (xs[i], ys[i]), xytext=(dx, dy), **style)
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
            if len(others):  # a label nearer another point reads as that point's
                centre = np.array([(box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2])
                own = np.hypot(*(centre - pts[i]))
                if np.hypot(*(others - centre).T).min() < own:
                    cost += 15.0
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
            **style,
            arrowprops=dict(arrowstyle="-", color="#999999", lw=0.6, shrinkA=0, shrinkB=5) if far else None,
        )
        placed.append(box)


def _dodge(ax, ok: pd.DataFrame, xcol: str) -> np.ndarray:
    """x of each point, those that would cover each other (the same x within 2 pixels, equal
    GMACs say, and overlapping in y with their error bars) spread sideways by DODGE_PX around
    that x, in study order. The limits must be set."""
    xs = ok[xcol].to_numpy(float)
    ys = ok["top1_mean"].to_numpy(float)
    std = ok["top1_std"].fillna(0).to_numpy(float)
    pix = ax.transData.transform(np.column_stack([xs, ys]))
    lo = ax.transData.transform(np.column_stack([xs, ys - std]))[:, 1]
    hi = ax.transData.transform(np.column_stack([xs, ys + std]))[:, 1]
    r = 7.0 * ax.figure.dpi / 72.0
    group = list(range(len(xs)))

    def root(i: int) -> int:
        while group[i] != i:
            i = group[i]
        return i

    for i in range(len(xs)):
        for j in range(i + 1, len(xs)):
            if abs(pix[i, 0] - pix[j, 0]) < 2.0 and lo[i] - r < hi[j] + r and lo[j] - r < hi[i] + r:
                group[root(j)] = root(i)
    shifted = xs.copy()
    per_px = (ax.get_xlim()[1] - ax.get_xlim()[0]) / ax.get_window_extent().width
    for g in set(root(i) for i in range(len(xs))):
        members = [i for i in range(len(xs)) if root(i) == g]
        if len(members) < 2:
            continue
        centre = float(np.mean(xs[members]))
        for k, i in enumerate(members):  # rows are in study order
            shifted[i] = centre + (k - (len(members) - 1) / 2) * DODGE_PX * per_px
    return shifted


def draw_scatter(frame: pd.DataFrame, xcol: str, xlabel: str, title: str, subtitle: str) -> Figure:
    """Measured top-1 against a cost, with the roadmap's path drawn parent -> child."""
    keys = step_keys(frame)
    colors = phase_colors(frame)
    entries = len(frame) + len(phase_spans(frame))
    height = max(8.0, 2.2 + 0.21 * entries)
    fig = new_figure((10, height))
    subtitle = fit_text(fig, subtitle, 0.89, 8.5, lines=2)
    head = 0.55 + (subtitle.count("\n") + 3) * 0.145  # the title, the subtitle and up to two lines of notes
    fig.subplots_adjust(left=0.09, right=0.68, top=1 - head / height, bottom=0.75 / height)
    ax = fig.add_subplot()
    sweep = set(frame.loc[frame["sweep"], "step"])
    ok = frame[(frame["status"] == "done") & frame[xcol].notna() & frame["top1_mean"].notna()]
    unlearned = set(ok.loc[ok["n_did_not_learn"] > 0, "step"])
    if len(unlearned) < len(ok):  # a step with a run at chance level would squash the others: listed, not drawn
        ok = ok[~ok["step"].isin(unlearned)]
    parents = dict(zip(frame["step"], frame["parent"], strict=True))

    # Limits first (with margin for the labels), then the points (spread where they would
    # cover each other), then the labels, so their boxes are final.
    dodged = False
    if len(ok):
        xv, yv = ok[xcol].to_numpy(float), ok["top1_mean"].to_numpy(float)
        ye = ok["top1_std"].fillna(0).to_numpy(float)
        xspan = max(xv.max() - xv.min(), abs(xv.max()) * 0.05, 1e-9)
        yspan = max((yv + ye).max() - (yv - ye).min(), 0.2)
        ax.set_xlim(xv.min() - 0.1 * xspan, xv.max() + 0.1 * xspan)
        ax.set_ylim((yv - ye).min() - 0.1 * yspan, (yv + ye).max() + 0.1 * yspan)
        shown = _dodge(ax, ok, xcol)
        dodged = bool((shown != xv).any())
    else:
        shown = np.empty(0)
    pos = {r.step: (x, r.top1_mean) for r, x in zip(ok.itertuples(index=False), shown, strict=True)}

    # Path of the roadmap: each step linked to its nearest measured ancestor.
    segments, dashed = [], False
    for slug, (x, y) in pos.items():
        anc = parents.get(slug)
        while anc is not None and anc not in pos:
            anc = parents.get(anc)
        if anc is None:
            continue
        direct = anc == parents.get(slug)
        dashed |= slug in sweep or not direct
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

    for r, x in zip(ok.itertuples(index=False), shown, strict=True):
        color = keys[r.step].color
        is_sweep = r.step in sweep
        if not math.isnan(r.top1_std):
            segments.append(((x, r.top1_mean - r.top1_std), (x, r.top1_mean + r.top1_std)))
        ax.errorbar(
            x,
            r.top1_mean,
            yerr=None if math.isnan(r.top1_std) else r.top1_std,
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
    if len(ok):
        _place_labels(
            ax,
            shown,
            ok["top1_mean"].to_numpy(float),
            [keys[s].number for s in ok["step"]],
            [keys[s].color for s in ok["step"]],
            segments,
        )

    ax.grid(color="#e3e3e3", lw=0.7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("measured top-1 accuracy (%), mean ± std over seeds")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)

    # Key: number -> step, grouped by phase; steps without a result are listed greyed out.
    room = 0.255  # the key's text, right of its markers, up to the right edge
    handles, bold, grey = [], {}, []
    for phase, first, last in phase_spans(frame):
        bold[len(handles)] = str(phase)
        handles.append(Line2D([], [], ls="none", label=fit_text(fig, str(phase), room, 8.5, weight="bold")))
        for r in frame.iloc[first : last + 1].itertuples(index=False):
            is_shown = r.step in pos
            tag = (
                ""
                if is_shown
                else "  (did not learn)"
                if r.step in unlearned
                else {"failed": "  (failed)", "missing": "  (not run)"}.get(r.status, "  (no result)")
            )
            if not is_shown:
                grey.append(len(handles))
            number = f"{keys[r.step].number:>2}  "
            label = fit_text(
                fig,
                f"{r.label}" + (" (sweep)" if r.step in sweep else "") + tag,
                room - 0.025 - text_width(fig, number, 8.5),
                8.5,
            )
            handles.append(
                Line2D(
                    [],
                    [],
                    marker="o" if is_shown else "x",
                    ls="none",
                    ms=6,
                    color=keys[r.step].color if is_shown else "#aaaaaa",
                    mfc="white" if r.step in sweep else None,
                    mew=1.5,
                    label=number + label.replace("\n", " "),
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
            txt.set_color(colors[bold[k]])
        elif k in grey:
            txt.set_color("#999999")
    notes = []
    if segments and pos and any(parents.get(s) for s in pos):
        notes.append("Arrows: parent → child" + (" (dashed: sweep branch or via an unmeasured step)" if dashed else ""))
    if sweep & set(pos):
        notes.append("open markers: sweep branch")
    if dodged:
        notes.append("points of equal cost spread sideways a few pixels")
    kinds = [
        text
        for first, text in (
            ("0123456789", "roadmap index"),
            ("d", "d1, d2, …: steps the study defines"),
            ("r", "r1, …: reference models"),
        )
        if any(k.number[0] in first for k in keys.values())
    ]
    notes.append("numbers as in roadmap.png (" + "; ".join(kinds) + ")")
    line = "; ".join(notes) + "."
    text = subtitle + "\n" + fit_text(fig, line[0].upper() + line[1:], 0.89, 8.5, lines=2)
    fig.text(
        0.09,
        1 - 0.2 / height,
        fit_text(fig, title, 0.89, 13, weight="bold"),
        ha="left",
        va="top",
        fontsize=13,
        fontweight="bold",
    )
    fig.text(0.09, 1 - 0.48 / height, text, ha="left", va="top", fontsize=8.5, color="#444444")
    return fig
