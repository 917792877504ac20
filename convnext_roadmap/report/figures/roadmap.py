"""Figure 2 of the paper, redrawn for any study: one row per step, in the study's order.

Left panel: measured top-1 per step, a point with its ± std over seeds (points, not bars: the
axis does not start at 0, so a bar's length would exaggerate the gaps; the points' positions
do not). Right panel: each step's change against its declared parent, on one axis of top-1
points: the measured paired delta with its 95% paired t interval (filled: resolved, the interval
excludes 0; hollow: unresolved) beside the paper's delta (diamond). The delta axis spans the
deltas themselves (means and the paper's); an interval reaching far past them (2 seeds give t
intervals of tens of points) is cut at the axis with an arrowhead. A row whose parent is not
the row above names it under its label. Reference models (Swin-T) sit below the chain as a
reference line and their delta against the final step. Labels of any length are wrapped and
cut with "…" to stay inside the figure.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import blended_transform_factory

from ...store.record import Record
from .style import (
    PAPER_COLOR,
    STATUS_COLORS,
    fit_text,
    new_figure,
    phase_colors,
    phase_spans,
    short_failure,
    step_keys,
    text_width,
)

UNRESOLVED = "#9a9a9a"
WIDTH = 12.5  # inches
LABEL_SIZE, NOTE_SIZE, PHASE_SIZE = 9.5, 7.5, 9.0
PHASE_ROOM = 0.1  # the widest a phase name may be, as a fraction of the figure's width
LEFT_MAX = 0.36  # where the measured panel starts at the latest
DELTA_REACH = 2.0  # the delta axis shows intervals up to this many times the largest delta


def _fmt(value: float, spec: str = ".2f", signed: bool = False) -> str:
    return "—" if value is None or pd.isna(value) else format(value, ("+" if signed else "") + spec)


def _rows(frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, int]:
    """The chain's rows first, then reference models below a gap; their y positions."""
    chain, refs = frame[~frame["reference"]], frame[frame["reference"]]
    rows = pd.concat([chain, refs], ignore_index=True)
    ys = np.arange(len(rows), dtype=float)
    if len(chain):
        ys[len(chain) :] += 0.6
    return rows, ys, len(chain)


def _done(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[(rows["status"] == "done") & rows["top1_mean"].notna()]


def _learned(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows the axes are scaled to: a step with a run at chance level (did not learn) sits
    far from the others and would squash them; it is drawn at the axis' edge instead, unless
    every step is such a step."""
    unlearned = set(rows.loc[rows["n_did_not_learn"] > 0, "step"])
    keep = rows[~rows["step"].isin(unlearned) & ~rows["parent"].isin(unlearned)]
    return keep if len(_done(keep)) else rows


def _measured_limits(rows: pd.DataFrame, text_room: float) -> tuple[float, float]:
    """The top-1 axis: the points and their std with a margin, and `text_room` (a fraction of
    the panel) on the right for the numbers printed beside them."""
    done = _done(_learned(rows))
    if done.empty:
        return 0.0, 100.0
    lo = float((done["top1_mean"] - done["top1_std"].fillna(0)).min())
    hi = float((done["top1_mean"] + done["top1_std"].fillna(0)).max())
    span = max(hi - lo, 0.5)
    x0, x1 = max(0.0, lo - 0.12 * span), hi + 0.08 * span
    return x0, x0 + (x1 - x0) / (1 - min(text_room, 0.6))


def delta_limit(rows: pd.DataFrame) -> float:
    """Half the delta axis: the largest measured or paper delta with a margin, widened to
    show intervals that end within DELTA_REACH times it; longer ones are cut at the axis."""
    rows = _learned(rows)
    deltas = pd.concat([rows["delta_vs_parent"], rows["paper_delta_vs_parent"]]).dropna().abs()
    base = max(float(deltas.max()) if len(deltas) else 0.0, 0.5)
    ends = pd.concat([rows["delta_vs_parent_ci_low"], rows["delta_vs_parent_ci_high"]]).dropna().abs()
    shown = ends[ends <= DELTA_REACH * base]
    return max(base, float(shown.max()) if len(shown) else 0.0) * 1.12


def _single_parent(rows: pd.DataFrame) -> str | None:
    """The one parent every measured change of the chain is taken against, if there is one."""
    parents = rows.loc[rows["delta_vs_parent"].notna() & ~rows["reference"], "parent"].unique()
    return parents[0] if len(parents) == 1 else None


def draw_roadmap(frame: pd.DataFrame, records: list[Record], title: str, subtitle: str) -> Figure:
    rows, ys, n_chain = _rows(frame)
    n = len(rows)
    keys = step_keys(rows)
    labels = dict(zip(rows["step"], rows["label"], strict=True))
    fig = new_figure((WIDTH, 6.0))

    # Texts fitted to their room first: they decide the layout.
    title_text = fit_text(fig, title, 0.96, 13, lines=3, weight="bold")
    subtitle_text = "\n".join(fit_text(fig, line, 0.96, 8.8, lines=2) for line in subtitle.split("\n"))
    spans = phase_spans(rows.iloc[:n_chain])
    phases = [
        fit_text(fig, str(p), PHASE_ROOM, PHASE_SIZE, lines=2 if last == first else 3, weight="bold")
        for p, first, last in spans
    ]
    phase_w = max((text_width(fig, p, PHASE_SIZE, "bold") for p in phases), default=0.0)
    room = LEFT_MAX - 0.045 - phase_w
    single = _single_parent(rows)
    row_texts, notes = [], []
    for i, r in enumerate(rows.itertuples(index=False)):
        number = f"  {keys[r.step].number}"
        body = fit_text(
            fig,
            str(r.label) + ("  · sweep" if r.sweep else ""),  # fitted as if bold: some are
            room - text_width(fig, number, LABEL_SIZE, "bold"),
            LABEL_SIZE,
            lines=2,
            weight="bold",
        )
        row_texts.append(body + number)
        note = []
        above = rows["step"].iloc[i - 1] if i else None
        if isinstance(r.parent, str) and r.parent != above and r.parent in labels and r.parent != single:
            note.append(
                fit_text(fig, f"Δ vs {keys[r.parent].number} {labels[r.parent]}", room, NOTE_SIZE, weight="bold")
            )  # fitted as the bold warning is: drawn in italic, narrower
        if r.n_did_not_learn:
            note.append(
                fit_text(
                    fig,
                    f"⚠ {r.n_did_not_learn} of {r.n_seeds} run(s) did not learn (chance level)",
                    room,
                    NOTE_SIZE,
                    weight="bold",
                )
            )
        notes.append(note)
    label_w = max(
        [text_width(fig, t, LABEL_SIZE, "bold") for t in row_texts]
        + [text_width(fig, t, NOTE_SIZE, "bold") for note in notes for t in note]
        + [0.0]
    )
    left = min(max(0.045 + phase_w + label_w, 0.2), LEFT_MAX)

    a_right = left + max(0.2, 0.52 - left)
    delta_w = 0.775 - a_right - 0.035
    against = fit_text(
        fig,
        f"Δ top-1 (points) vs {keys[single].number} {labels[single]}"
        if single in labels
        else "Δ top-1 (points) vs each step's parent",
        delta_w + 0.03,
        9.5,
        lines=2,
    )

    # Heights in inches: the rows, as tall as their most lines; the title block; the legend.
    lines_pt = [t.count("\n") * 11.4 + 11.4 + 9.2 * len(note) for t, note in zip(row_texts, notes, strict=True)]
    pitch = max(0.42, (max(lines_pt, default=0) + 8) / 72)
    title_h = (title_text.count("\n") + 1) * 0.21
    subtitle_top = 0.18 + title_h + 0.08
    head = subtitle_top + (subtitle_text.count("\n") + 1) * 0.148 + 0.47
    handles = _legend_handles(rows)
    legend_rows = 1 if len(handles) <= 5 else 2
    foot = 0.95 + 0.2 * legend_rows + 0.16 * against.count("\n")
    height = max(5.2, head + foot + pitch * (n + 0.6 * (n > n_chain > 0) + 0.3))
    fig.set_size_inches(WIDTH, height)
    bottom, top = foot / height, 1 - head / height
    measured = fig.add_axes((left, bottom, a_right - left, top - bottom))
    delta = fig.add_axes((a_right + 0.035, bottom, delta_w, top - bottom), sharey=measured)
    panel_w = measured.get_position().width
    fewer = rows["n_seeds"].max()
    widest = "00.00" + (" (n=1)" if (_done(rows)["n_seeds"] < fewer).any() else "")
    value_room = (text_width(fig, widest, 8, "bold") + 0.006) / panel_w
    x0, x1 = _measured_limits(rows, value_room)
    measured.set_xlim(x0, x1)
    measured.set_ylim(ys[-1] + 0.6, -0.7)
    limit = delta_limit(rows)
    delta.set_xlim(-limit, limit)
    label_tf = blended_transform_factory(fig.transFigure, measured.transData)

    # Phase bands and brackets on the left, as in the paper (the chain only).
    colors = phase_colors(rows)
    bracket_x = left - label_w - 0.014
    for k, (phase, first, last) in enumerate(spans):
        color = colors[str(phase)]
        for ax in (measured, delta):
            if k % 2 == 0:
                ax.axhspan(first - 0.5, last + 0.5, color="#f3f3f3", zorder=0, lw=0)
        measured.plot(
            [bracket_x, bracket_x],
            [first - 0.35, last + 0.35],
            transform=label_tf,
            color=color,
            lw=2.2,
            clip_on=False,
            solid_capstyle="butt",
        )
        measured.text(
            bracket_x - 0.006,
            (first + last) / 2,
            phases[k],
            transform=label_tf,
            ha="right",
            va="center",
            fontsize=PHASE_SIZE,
            color=color,
            fontweight="bold",
            linespacing=1.0,
        )
    if n > n_chain > 0:
        for ax in (measured, delta):
            ax.axhline(n_chain - 0.5 + 0.3, color="#888888", lw=0.8, ls=(0, (4, 3)))

    # Bold: the start, and the last step when it is the child of the step above it (the end of
    # a chain); the last of a study of siblings (leave-one-out) is not an end point.
    chain = rows.iloc[:n_chain]
    ends = {chain["order"].iloc[0]} if n_chain else set()  # a study of reference models has no chain
    if n_chain > 1 and chain["parent"].iloc[-1] == chain["step"].iloc[-2]:
        ends.add(chain["order"].iloc[-1])
    status = dict(zip(rows["step"], rows["status"], strict=True))
    for y, r, text, note, lines in zip(ys, rows.itertuples(index=False), row_texts, notes, lines_pt, strict=True):
        key = keys[r.step]
        label_h = lines - 9.2 * len(note)
        measured.annotate(
            text,
            (left - 0.008, y),
            xycoords=label_tf,
            xytext=(0, (lines - label_h) / 2),
            textcoords="offset points",
            ha="right",
            va="center",
            fontsize=LABEL_SIZE,
            fontweight="bold" if (r.order in ends or r.reference) else "normal",
            fontstyle="italic" if r.sweep else "normal",
            color="#666666" if r.sweep else "black",
            linespacing=1.0,
            annotation_clip=False,
        )
        for j, line in enumerate(note):
            warn = line.startswith("⚠")
            measured.annotate(
                line,
                (left - 0.008, y),
                xycoords=label_tf,
                xytext=(0, lines / 2 - label_h - 9.2 * j - 4.6),
                textcoords="offset points",
                ha="right",
                va="center",
                fontsize=NOTE_SIZE,
                annotation_clip=False,
                fontstyle="normal" if warn else "italic",
                fontweight="bold" if warn else "normal",
                color=STATUS_COLORS["failed"] if warn else "#555555",
            )
        if r.status == "done" and not math.isnan(r.top1_mean):
            std = 0.0 if math.isnan(r.top1_std) else r.top1_std
            alpha = 0.5 if r.sweep else 1.0
            value = f"{r.top1_mean:.2f}" + (f" (n={r.n_seeds})" if r.n_seeds < fewer else "")
            if x0 <= r.top1_mean <= x1:
                measured.errorbar(
                    r.top1_mean,
                    y,
                    xerr=std if std else None,
                    fmt="o",
                    ms=7,
                    color=key.color,
                    mec=key.color,
                    alpha=alpha,
                    ecolor=key.color,
                    elinewidth=1.4,
                    capsize=3.5,
                    zorder=3,
                )
                at = min(r.top1_mean + std, x1)
            else:  # off the axis (a run that did not learn): an arrowhead at the edge, its number beside
                at = x0 if r.top1_mean < x0 else x1
                measured.plot(
                    [at],
                    [y],
                    marker="<" if r.top1_mean < x0 else ">",
                    ms=7,
                    color=key.color,
                    alpha=alpha,
                    zorder=3,
                    clip_on=False,
                )
                value += " (off the axis)"
            measured.annotate(
                value,
                (at, y),
                xytext=(5, 0) if at < x1 else (-5, -9),
                textcoords="offset points",
                ha="left" if at < x1 else "right",
                va="center",
                fontsize=8,
                fontweight="bold",
                color="#333333",
                zorder=4,
            )
            if r.reference:  # a reference line across the chain, as the paper draws Swin-T
                measured.plot(
                    [r.top1_mean, r.top1_mean], [-0.5, n_chain - 0.5], color=key.color, lw=1.1, ls=":", zorder=1
                )
        else:
            text = {"failed": short_failure(records, r.step), "missing": "not run"}.get(r.status, "no top-1")
            measured.annotate(
                fit_text(fig, text, panel_w * 0.95, 9, style="italic"),
                (x0, y),
                xytext=(4, 0),
                textcoords="offset points",
                ha="left",
                va="center",
                fontsize=9,
                style="italic",
                color=STATUS_COLORS.get(r.status, "#8a8a8a"),
            )
        _draw_delta(
            fig,
            delta,
            y,
            r,
            key.color,
            parent_in_study=r.parent in labels,
            parent_status=status.get(r.parent, "missing"),
        )

    for ax in (measured, delta):
        ax.set_yticks([])
        ax.grid(axis="x", color="#dddddd", lw=0.7)
        for side in ("right", "top"):
            ax.spines[side].set_visible(False)
    measured.xaxis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]))
    measured.set_xticks([t for t in measured.get_xticks() if x0 <= t <= min(x1, 100.0)])
    dataset = sorted({str(r.dataset) for r in records if r.dataset})
    heading = fit_text(fig, f"measured top-1 (%){' on ' + '/'.join(dataset) if dataset else ''}", panel_w + 0.03, 9.5)
    measured.set_xlabel(heading + "\nmean ± std over seeds", fontsize=9.5)
    delta.axvline(0, color="#555555", lw=0.9, zorder=1)
    paper = any(line.get_marker() == "D" for line in delta.get_lines())
    delta.set_xlabel(against + "\npaired mean, 95% paired t CI" + ("; ◇ paper" if paper else ""), fontsize=9.5)
    _number_columns(fig, measured, ys, rows)

    ncol = math.ceil(len(handles) / legend_rows) if handles else 1
    if handles:
        fig.legend(
            handles=handles,
            loc="lower center",
            ncol=ncol,
            frameon=False,
            bbox_to_anchor=(0.5, 0.08 / height),
            columnspacing=1.3,
            handlelength=1.8,
            fontsize=8.5,
        )
    fig.text(
        0.5, 1 - 0.18 / height, title_text, ha="center", va="top", fontsize=13, fontweight="bold", linespacing=1.15
    )
    fig.text(0.5, 1 - subtitle_top / height, subtitle_text, ha="center", va="top", fontsize=8.8, color="#444444")
    return fig


def _clipped(r, limit: float) -> tuple[float, float, bool, bool]:
    """The interval as drawn on an axis of ±limit, and whether each end was cut."""
    low, high = float(r.delta_vs_parent_ci_low), float(r.delta_vs_parent_ci_high)
    return max(low, -limit), min(high, limit), low < -limit, high > limit


def _legend_handles(rows: pd.DataFrame) -> list:
    """The legend's entries: only what the figure draws."""
    done = _done(rows)
    measured = rows["delta_vs_parent"].notna()
    with_ci = measured & rows["delta_vs_parent_ci_low"].notna()
    resolved = with_ci & rows["resolved"].fillna(False).astype(bool)
    paper = rows["paper_delta_vs_parent"].notna() & rows["parent"].isin(set(rows["step"]))
    limit = delta_limit(rows)
    cut = with_ci & ((rows["delta_vs_parent_ci_low"] < -limit) | (rows["delta_vs_parent_ci_high"] > limit)) | (
        rows["delta_vs_parent"].abs() > limit
    )
    handles = []
    if done["top1_std"].notna().any():
        handles.append(
            Line2D([], [], marker="o", ls="-", color="#555555", ms=6, label="measured top-1 (mean ± std over seeds)")
        )
    elif len(done):
        handles.append(
            Line2D([], [], marker="o", ls="none", color="#555555", ms=6, label="measured top-1 (one seed: no spread)")
        )
    if done["sweep"].any():
        handles.append(
            Line2D([], [], marker="o", ls="-", color="#555555", alpha=0.5, ms=6, label="sweep branch (lighter)")
        )
    if resolved.any():
        handles.append(
            Line2D([], [], marker="o", ls="-", color="#555555", ms=6, label="Δ resolved (95% CI excludes 0)")
        )
    if (with_ci & ~resolved).any():
        handles.append(
            Line2D(
                [], [], marker="o", ls="-", color=UNRESOLVED, mfc="white", ms=6, label="Δ unresolved (CI includes 0)"
            )
        )
    if (measured & ~with_ci).any():
        handles.append(
            Line2D(
                [],
                [],
                marker="o",
                ls="none",
                color=UNRESOLVED,
                mfc="white",
                ms=6,
                label="Δ of one seed pair (no interval)",
            )
        )
    if cut.any():
        handles.append(
            Line2D([], [], marker=">", ls="-", color="#555555", ms=5, label=f"cut at the axis (runs past ±{limit:.1f})")
        )
    if paper.any():
        handles.append(
            Line2D(
                [],
                [],
                marker="D",
                ls="none",
                color=PAPER_COLOR,
                mfc="white",
                ms=5.5,
                mew=1.3,
                label="paper Δ (ImageNet-1K)",
            )
        )
    return handles


def _draw_delta(fig: Figure, ax, y: float, r, color: str, parent_in_study: bool, parent_status: str) -> None:
    """One row of the delta panel: measured paired delta with its interval, paper delta."""
    limit = ax.get_xlim()[1]
    if not pd.isna(r.paper_delta_vs_parent) and parent_in_study:
        ax.plot(r.paper_delta_vs_parent, y + 0.17, "D", color=PAPER_COLOR, mfc="white", ms=5.5, mew=1.3, zorder=5)
    if pd.isna(r.delta_vs_parent):
        no_parent = r.parent is None or pd.isna(r.parent)
        note = (
            "no roadmap step to compare with"
            if no_parent and r.reference
            else "the baseline: no parent"
            if no_parent
            else {"failed": "failed: no Δ", "missing": "not run"}.get(r.status)
            if r.status != "done"
            else f"parent {r.parent} not in the study"
            if not parent_in_study
            else "its parent has no result"
            if parent_status != "done"
            else "no seeds shared with its parent"
        )
        ax.annotate(
            fit_text(fig, note, ax.get_position().width * 0.95, 8, style="italic"),
            (-limit, y),
            xytext=(4, 0),
            textcoords="offset points",
            ha="left",
            va="center",
            fontsize=8,
            style="italic",
            color="#8a8a8a",
        )
        return
    resolved = bool(r.resolved) if not pd.isna(r.resolved) else False
    shade = color if resolved else UNRESOLVED
    if not pd.isna(r.delta_vs_parent_ci_low):
        low, high, cut_low, cut_high = _clipped(r, limit)
        ax.plot([low, high], [y - 0.1, y - 0.1], color=shade, lw=1.8, solid_capstyle="butt", zorder=3)
        for cut, end, marker in ((cut_low, low, "<"), (cut_high, high, ">")):
            if cut:  # the interval runs past the axis: an arrowhead at its edge says so
                ax.plot([end], [y - 0.1], marker=marker, color=shade, ms=6, zorder=4, clip_on=False)
    mean, marker = r.delta_vs_parent, "o"
    if abs(mean) > limit:  # off the axis (a parent or child that did not learn): an arrowhead at the edge
        mean, marker = math.copysign(limit, mean), ">" if mean > 0 else "<"
    ax.plot(
        mean, y - 0.1, marker, color=shade, mfc=shade if resolved else "white", ms=6.5, mew=1.6, zorder=4, clip_on=False
    )


def _number_columns(fig: Figure, ax, ys: np.ndarray, rows: pd.DataFrame) -> None:
    """The paper's top-1, parameters (at the trained width) and GMACs (width 1, 224 px)."""
    tf = blended_transform_factory(fig.transFigure, ax.transData)
    width = rows["width_mult"].dropna()
    params = f"params\n(×{width.iloc[0]:g} width)" if len(width) and width.nunique() == 1 else "params\n(trained)"
    columns = [
        ("paper\ntop-1", "paper_top1", ".1f", 0.81),
        (params, "params_m", ".2f", 0.875),
        ("GMACs@224\n(width ×1)", "gmacs_224", ".2f", 0.945),
    ]
    for heading, column, spec, x in columns:
        ax.text(
            x,
            ys[0] - 0.75,
            heading,
            transform=tf,
            ha="center",
            va="bottom",
            fontsize=8.3,
            fontweight="bold",
            color="#333333",
            linespacing=1.0,
        )
        for y, value in zip(ys, rows[column], strict=True):
            text = _fmt(value, spec) + ("M" if column == "params_m" and not pd.isna(value) else "")
            ax.text(
                x,
                y,
                text,
                transform=tf,
                ha="center",
                va="center",
                fontsize=8.8,
                color=PAPER_COLOR if column == "paper_top1" else "#333333",
            )
