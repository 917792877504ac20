"""Figure 2 of the paper, redrawn for any study: one row per step, in the study's order.

Left panel: measured top-1 per step (mean ± std over seeds). Right panel: each step's
change against its declared parent, on one axis of top-1 points: the measured paired delta
with its 95% interval (filled: resolved, the interval excludes 0; hollow: unresolved) beside
the paper's delta (diamond). Measured and paper numbers thus share only an axis of the same
quantity (a delta in points); the paper's absolute top-1 is printed as a number. Reference
models (Swin-T) sit below the chain as a reference line and their delta against the final step.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.transforms import blended_transform_factory

from ...store.record import Record
from .style import PAPER_COLOR, STATUS_COLORS, new_figure, phase_color, phase_spans, short_failure

UNRESOLVED = "#9a9a9a"


def _fmt(value: float, spec: str = ".2f", signed: bool = False) -> str:
    return "—" if value is None or pd.isna(value) else format(value, ("+" if signed else "") + spec)


def _rows(frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, int]:
    """The chain's rows first, then reference models below a gap; their y positions."""
    chain, refs = frame[~frame["reference"]], frame[frame["reference"]]
    rows = pd.concat([chain, refs], ignore_index=True)
    ys = np.arange(len(rows), dtype=float)
    ys[len(chain) :] += 0.6
    return rows, ys, len(chain)


def _measured_limits(rows: pd.DataFrame) -> tuple[float, float]:
    done = rows[(rows["status"] == "done") & rows["top1_mean"].notna()]
    if done.empty:
        return 0.0, 100.0
    lo = float((done["top1_mean"] - done["top1_std"].fillna(0)).min())
    hi = float((done["top1_mean"] + done["top1_std"].fillna(0)).max())
    span = max(hi - lo, 0.5)
    return max(0.0, lo - 0.45 * span), min(100.0, hi + 0.15 * span)


def _delta_limit(rows: pd.DataFrame) -> float:
    values = (
        pd.concat(
            [
                rows["delta_vs_parent"],
                rows["delta_vs_parent_ci_low"],
                rows["delta_vs_parent_ci_high"],
                rows["paper_delta_vs_parent"],
            ]
        )
        .dropna()
        .abs()
    )
    return max(float(values.max()) * 1.12 if len(values) else 0.0, 0.5)


def _delta_heading(rows: pd.DataFrame) -> str:
    parents = rows.loc[rows["delta_vs_parent"].notna() & ~rows["reference"], "parent"].unique()
    labels = dict(zip(rows["step"], rows["label"]))
    if len(parents) == 1:
        return f"Δ top-1 vs {labels.get(parents[0], parents[0])} (points)"
    return "Δ top-1 vs each step's parent (points)"


def draw_roadmap(frame: pd.DataFrame, records: list[Record], title: str, subtitle: str) -> Figure:
    rows, ys, n_chain = _rows(frame)
    n = len(rows)
    height = max(5.2, 2.3 + 0.42 * (n + 0.6 * (n > n_chain)))
    fig = new_figure((12.5, height))
    title_lines = _fit_title(fig, title)
    if title_lines > 1:  # room for the title's second line
        height += 0.26
        fig.set_size_inches(12.5, height)
    labels = [
        f"{r.label}" + ("  · sweep" if r.sweep else "") + ("" if pd.isna(r.step_index) else f"  {r.step_index}")
        for r in rows.itertuples(index=False)
    ]
    phases = [_two_lines(p) for p, _, _ in phase_spans(rows.iloc[:n_chain])]
    label_w, phase_w = _text_width(fig, labels, 9.5, bold=True), _text_width(fig, phases, 9, bold=True)
    left = min(max(0.04 + phase_w + label_w, 0.2), 0.36)
    bottom, top = 1.15 / height, 1 - (1.25 + 0.26 * (title_lines > 1)) / height
    measured = fig.add_axes((left, bottom, max(0.2, 0.52 - left), top - bottom))
    a_right = measured.get_position().x1
    delta = fig.add_axes((a_right + 0.035, bottom, 0.775 - a_right - 0.035, top - bottom), sharey=measured)
    bracket_x = left - label_w - 0.012
    x0, x1 = _measured_limits(rows)
    measured.set_xlim(x0, x1)
    measured.set_ylim(ys[-1] + 0.6, -0.7)
    limit = _delta_limit(rows)
    delta.set_xlim(-limit, limit)

    # Phase bands and brackets on the left, as in the paper (the chain only).
    label_tf = blended_transform_factory(fig.transFigure, measured.transData)
    for k, (phase, first, last) in enumerate(phase_spans(rows.iloc[:n_chain])):
        color = phase_color(phase)
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
            fontsize=9,
            color=color,
            fontweight="bold",
            linespacing=1.0,
        )
    if n > n_chain:
        for ax in (measured, delta):
            ax.axhline(n_chain - 0.5 + 0.3, color="#888888", lw=0.8, ls=(0, (4, 3)))

    for y, r in zip(ys, rows.itertuples(index=False)):
        color = phase_color("reference" if r.reference else r.phase)
        if r.status == "done" and not math.isnan(r.top1_mean):
            measured.barh(
                y,
                r.top1_mean - x0,
                left=x0,
                height=0.66,
                color=color,
                alpha=0.38 if (r.sweep or r.reference) else 0.9,
                hatch="////" if r.sweep else None,
                edgecolor=color,
                lw=0.8,
                zorder=2,
            )
            if not math.isnan(r.top1_std):
                measured.errorbar(
                    r.top1_mean, y, xerr=r.top1_std, fmt="none", ecolor="#333333", elinewidth=1.1, capsize=3, zorder=3
                )
            measured.annotate(
                f"{r.top1_mean:.2f}",
                (x0, y),
                xytext=(4, 0),
                textcoords="offset points",
                ha="left",
                va="center",
                fontsize=8,
                fontweight="bold",
                zorder=4,
                color="#333333" if (r.sweep or r.reference) else "white",
            )
            if r.n_seeds < rows["n_seeds"].max():  # fewer seeds than the others: say so
                measured.annotate(
                    f"n={r.n_seeds}",
                    (r.top1_mean + (0 if math.isnan(r.top1_std) else r.top1_std), y),
                    xytext=(4, 0),
                    textcoords="offset points",
                    ha="left",
                    va="center",
                    fontsize=8,
                    color="#333333",
                    style="italic",
                    zorder=4,
                )
            if r.n_did_not_learn:  # at chance level: the bar says nothing about the change
                measured.annotate(
                    f"⚠ {r.n_did_not_learn} did not learn",
                    (x0, y),
                    xytext=(42, 0),
                    textcoords="offset points",
                    ha="left",
                    va="center",
                    fontsize=8,
                    color=STATUS_COLORS["failed"],
                    fontweight="bold",
                    zorder=5,
                )
            if r.reference:  # a reference line across the chain, as the paper draws Swin-T
                measured.plot([r.top1_mean, r.top1_mean], [-0.5, n_chain - 0.5], color=color, lw=1.1, ls=":", zorder=1)
        else:
            text = {"failed": short_failure(records, r.step), "missing": "not run"}.get(r.status, "no top-1")
            measured.annotate(
                text,
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
            delta,
            y,
            r,
            color,
            parent_in_study=r.parent in set(rows["step"]),
            parent_label=dict(zip(rows["step"], rows["label"])).get(r.parent, ""),
        )

    measured.set_yticks(ys, labels)
    # Bold: the start, and the last step when it is the child of the step above it (the end of
    # a chain); the last of a study of siblings (leave-one-out) is not an end point.
    chain = rows.iloc[:n_chain]
    ends = {chain["order"].iloc[0]} if n_chain else set()  # a study of reference models has no chain
    if n_chain > 1 and chain["parent"].iloc[-1] == chain["step"].iloc[-2]:
        ends.add(chain["order"].iloc[-1])
    for tick, r in zip(measured.get_yticklabels(), rows.itertuples(index=False)):
        if r.order in ends or r.reference:
            tick.set_fontweight("bold")
        if r.sweep:
            tick.set_color("#666666")
            tick.set_style("italic")
    measured.tick_params(axis="y", length=0)
    delta.tick_params(axis="y", length=0, labelleft=False)
    for ax in (measured, delta):
        ax.grid(axis="x", color="#dddddd", lw=0.7)
        for side in ("right", "top"):
            ax.spines[side].set_visible(False)
    dataset = sorted({str(r.dataset) for r in records if r.dataset})
    measured.set_xlabel(
        f"measured top-1 (%){' on ' + '/'.join(dataset) if dataset else ''}\nmean ± std over seeds", fontsize=9.5
    )
    delta.axvline(0, color="#555555", lw=0.9, zorder=1)
    delta.set_xlabel(_delta_heading(rows) + "\nmeasured: paired mean, 95% CI; ◇ paper", fontsize=9.5)
    _number_columns(fig, measured, ys, rows)

    handles = [
        Patch(facecolor="#777777", edgecolor="#777777", label="measured top-1 (mean ± std)"),
        Line2D([], [], marker="o", ls="-", color="#555555", ms=6, label="Δ resolved (95% CI excludes 0)"),
        Line2D([], [], marker="o", ls="-", color=UNRESOLVED, mfc="white", ms=6, label="Δ unresolved"),
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
        ),
    ]
    if rows["sweep"].any():
        handles.append(Patch(facecolor="#77777760", edgecolor="#777777", hatch="////", label="sweep branch"))
    fig.legend(
        handles=handles,
        loc="lower center",
        ncol=len(handles),
        frameon=False,
        bbox_to_anchor=(0.5, 0.0),
        columnspacing=1.3,
        handlelength=1.8,
        fontsize=8.5,
    )
    fig.text(
        0.5,
        1 - 0.18 / height,
        _wrapped(title, title_lines),
        ha="center",
        va="top",
        fontsize=13,
        fontweight="bold",
        linespacing=1.15,
    )
    fig.text(
        0.5,
        1 - (0.5 + 0.26 * (title_lines > 1)) / height,
        subtitle,
        ha="center",
        va="top",
        fontsize=8.8,
        color="#444444",
    )
    return fig


def _draw_delta(ax, y: float, r, color: str, parent_in_study: bool, parent_label: str = "") -> None:
    """One row of the delta panel: measured paired delta with its interval, paper delta."""
    if not pd.isna(r.paper_delta_vs_parent) and parent_in_study:
        ax.plot(r.paper_delta_vs_parent, y + 0.17, "D", color=PAPER_COLOR, mfc="white", ms=5.5, mew=1.3, zorder=5)
    if pd.isna(r.delta_vs_parent):
        note = (
            "the baseline: no parent"
            if r.parent is None or pd.isna(r.parent)
            else "its parent is not in the study"
            if not parent_in_study
            else "no seeds shared with its parent"
        )
        ax.annotate(
            note,
            (ax.get_xlim()[0], y),
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
        ax.plot(
            [r.delta_vs_parent_ci_low, r.delta_vs_parent_ci_high],
            [y - 0.1, y - 0.1],
            color=shade,
            lw=1.8,
            solid_capstyle="butt",
            zorder=3,
        )
    ax.plot(r.delta_vs_parent, y - 0.1, "o", color=shade, mfc=shade if resolved else "white", ms=6.5, mew=1.6, zorder=4)
    if r.reference:  # compared with the study's final step, not with a parent
        ax.annotate(
            f"vs {parent_label}",
            (ax.get_xlim()[0], y + 0.28),
            xytext=(4, 0),
            textcoords="offset points",
            ha="left",
            va="center",
            fontsize=7.5,
            style="italic",
            color="#555555",
        )


def _two_lines(phase: str) -> str:
    """A phase name over 12 characters on two lines: after its colon ("layer scale:" / "every
    step"), else at its first space ("inverted" / "bottleneck")."""
    if len(phase) <= 12:
        return phase
    head, sep, rest = phase.partition(": ")
    return f"{head}:\n{rest}" if sep else phase.replace(" ", "\n", 1)


def _fit_title(fig: Figure, title: str) -> int:
    """1 if the title fits the figure's width on one line, else 2 (a study's description can
    be long: recipe_vs_architecture's ran off both edges)."""
    return 1 if _text_width(fig, [title], 13, bold=True) <= 0.96 else 2


def _wrapped(title: str, lines: int) -> str:
    """The title on `lines` lines, broken after "Study “name”:" when it has one, else at the
    space nearest its middle."""
    if lines == 1:
        return title
    head, sep, rest = title.partition(": ")
    if sep and rest:
        return f"{head}:\n{rest}"
    middle = len(title) // 2
    spaces = [i for i, c in enumerate(title) if c == " "] or [middle]
    cut = min(spaces, key=lambda i: abs(i - middle))
    return f"{title[:cut]}\n{title[cut + 1 :]}"


def _text_width(fig: Figure, texts: list[str], size: float, bold: bool = False) -> float:
    """The widest of `texts` as a fraction of the figure's width."""
    renderer = fig.canvas.get_renderer()
    widest = 0.0
    for text in texts:
        artist = fig.text(0, 0, text, fontsize=size, fontweight="bold" if bold else "normal", linespacing=1.0)
        widest = max(widest, artist.get_window_extent(renderer).width)
        artist.remove()
    return widest / fig.bbox.width


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
        for y, value in zip(ys, rows[column]):
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
