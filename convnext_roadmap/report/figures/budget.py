"""budget.png: does a change's Δ survive more training? One small panel per change: its Δ
against the parent (y) at each budget (x, log scale) with the 95% paired interval, filled where
the interval excludes 0, the paper's Δ as a dashed reference; then the study's agreement with
the paper at each budget (sign count, Spearman ρ)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .style import PAPER_COLOR, fit_text, new_figure, step_keys

UNRESOLVED = "#9a9a9a"
COLUMNS = 4


def _true(value: object) -> bool:
    """A resolved flag that is True (not False, not missing)."""
    return not pd.isna(value) and bool(value)


def _verdict(row_first: pd.Series, row_last: pd.Series, change: pd.Series | None) -> tuple[str, str]:
    """A panel's one-line verdict and its colour: whether the Δ turns around, changes, or holds."""
    first, last = row_first, row_last
    flipped = (
        _true(first["resolved"])
        and _true(last["resolved"])
        and np.sign(first["delta_vs_parent"]) != np.sign(last["delta_vs_parent"])
    )
    if flipped:
        return "turns around", "#B8860B"
    if change is not None and _true(change["resolved"]):
        return f"Δ moves {change['delta_change']:+.1f} by {int(change['budget_epochs'])} epochs (resolved)", "#0072B2"
    return "holds within the intervals", "#666666"


def draw_budget(frame: pd.DataFrame, budget_rows: pd.DataFrame, title: str, subtitle: str) -> Figure:
    changes = frame[frame["parent"].notna() & ~frame["reference"]]
    slugs = list(dict.fromkeys(changes["step"]))
    budgets = sorted(frame["budget_epochs"].unique())
    agreement = budget_rows[budget_rows["kind"] == "agreement"].set_index("budget_epochs")
    changed = budget_rows[(budget_rows["kind"] == "change") & (budget_rows["n_pairs"].fillna(0) >= 2)]
    moved = changed.sort_values("budget_epochs").groupby("step").tail(1).set_index("step")  # the largest measured
    panels = len(slugs) + 2
    rows = math.ceil(panels / COLUMNS)
    fig = new_figure((3.2 * COLUMNS, 2.35 * rows + 1.3))
    top = 1 - 1.05 / fig.get_figheight()
    fig.subplots_adjust(
        left=0.06, right=0.985, top=top, bottom=0.45 / fig.get_figheight() + 0.02, hspace=0.75, wspace=0.32
    )
    fig.text(
        0.01,
        1 - 0.12 / fig.get_figheight(),
        fit_text(fig, title, 0.98, 13, weight="bold"),
        ha="left",
        va="top",
        fontsize=13,
        fontweight="bold",
    )
    fig.text(
        0.01,
        1 - 0.45 / fig.get_figheight(),
        fit_text(fig, subtitle, 0.98, 8.5),
        ha="left",
        va="top",
        fontsize=8.5,
        color="#444444",
    )
    keys = step_keys(frame)
    panel_w = (0.985 - 0.06) / COLUMNS * 0.95
    drawn = {"filled": False, "hollow": False, "cut": False, "paper": False}  # the key names only these

    values = pd.concat([changes["delta_vs_parent"], changes["paper_delta_vs_parent"]]).dropna()
    reach = max(1.0, float(values.abs().max()) * 1.35) if len(values) else 1.0
    xs = np.array(budgets, dtype=float)
    for k, slug in enumerate(slugs):
        ax = fig.add_subplot(rows, COLUMNS, k + 1)
        part = changes[changes["step"] == slug].set_index("budget_epochs").reindex(budgets)
        first = part.iloc[0]
        color = keys[slug].color
        mean = part["delta_vs_parent"].to_numpy(float)
        low, high = part["delta_vs_parent_ci_low"].to_numpy(float), part["delta_vs_parent_ci_high"].to_numpy(float)
        ax.axhline(0, color="#555555", lw=0.8, zorder=1)
        ax.plot(xs, mean, color=color, lw=1.2, zorder=2)
        for x, m, lo, hi, resolved in zip(xs, mean, low, high, part["resolved"], strict=True):
            if math.isnan(m):
                continue
            if not math.isnan(lo):
                shown_lo, shown_hi = max(lo, -reach), min(hi, reach)
                ax.plot([x, x], [shown_lo, shown_hi], color=color, lw=1.4, zorder=2)
                for end, shown, marker in ((lo, shown_lo, "v"), (hi, shown_hi, "^")):
                    if end != shown:  # the interval runs past the axis: an arrow says so
                        ax.plot([x], [shown], marker=marker, color=color, ms=5, zorder=3)
                        drawn["cut"] = True
            filled = _true(resolved)
            drawn["filled" if filled else "hollow"] = True
            ax.plot([x], [m], "o", ms=6.5, color=color, mfc=color if filled else "white", mew=1.4, zorder=4)
        paper = first["paper_delta_vs_parent"]
        if not math.isnan(paper):
            drawn["paper"] = True
            ax.axhline(paper, color=PAPER_COLOR, lw=1.0, ls="--", zorder=1)
            ax.text(
                0.01,
                paper,
                "paper",
                transform=ax.get_yaxis_transform(),
                color=PAPER_COLOR,
                fontsize=7,
                va="bottom",
                ha="left",
            )  # left of the first budget's point
        measured = part[part["n_pairs"] >= 2]
        last = measured.iloc[-1] if len(measured) else part.iloc[-1]
        verdict, tone = _verdict(part.iloc[0], last, moved.loc[slug] if slug in moved.index else None)
        if np.isnan(mean).all():  # nothing to hold or move
            parent = first["parent"]
            verdict, tone = (
                (
                    f"no Δ: its parent {parent} is not in the study"
                    if parent not in set(frame["step"])
                    else "no Δ: no seeds paired with its parent"
                ),
                "#666666",
            )
        ax.set_title(
            fit_text(fig, f"{keys[slug].number} {first['label']}", panel_w, 9, lines=2, weight="bold"),
            loc="left",
            fontsize=9,
            fontweight="bold",
            pad=14,
        )
        ax.text(
            0,
            1.02,
            fit_text(fig, verdict, panel_w, 7.5, weight="bold"),
            transform=ax.transAxes,
            fontsize=7.5,
            color=tone,
            va="bottom",
            fontweight="normal" if tone == "#666666" else "bold",
        )
        _axes(ax, budgets, reach)
        if k % COLUMNS == 0:
            ax.set_ylabel("Δ vs parent (points)", fontsize=8)

    # a budget not yet measured for every change has no agreement to show
    complete = agreement["n_changes"] >= agreement["n_changes"].max() if len(agreement) else agreement["n_changes"]
    agreement = agreement[complete] if len(agreement) else agreement
    count = fig.add_subplot(rows, COLUMNS, len(slugs) + 1)
    n = agreement["n_changes"].reindex(budgets).to_numpy(float)
    signs = agreement["with_paper_sign"].reindex(budgets).to_numpy(float)
    both = agreement["resolved_with_paper_sign"].reindex(budgets).to_numpy(float)
    count.plot(xs, signs, "o-", color="#222222", ms=6)
    count.plot(xs, both, "s--", color="#222222", mfc="white", ms=5.5)
    count.text(
        0,
        1.02,
        "● with the paper's sign   □ … and resolved",
        transform=count.transAxes,
        fontsize=7.5,
        color="#666666",
        va="bottom",
    )  # a key above the panel: a legend inside would cover points
    top_n = int(np.nanmax(n)) if len(n) and not np.all(np.isnan(n)) else 1
    count.axhline(top_n, color="#bbbbbb", lw=0.8)
    count.set_title(f"changes with the paper's sign (of {top_n})", loc="left", fontsize=9, fontweight="bold", pad=14)
    _axes(count, budgets, None)
    count.set_ylim(-0.5, top_n + 0.5)
    count.yaxis.get_major_locator().set_params(integer=True)

    rho = fig.add_subplot(rows, COLUMNS, len(slugs) + 2)
    r = agreement["spearman_rho"].reindex(budgets).to_numpy(float)
    lo = agreement["spearman_ci_low"].reindex(budgets).to_numpy(float)
    hi = agreement["spearman_ci_high"].reindex(budgets).to_numpy(float)
    rho.axhline(0, color="#555555", lw=0.8)
    rho.errorbar(
        xs,
        r,
        yerr=np.vstack([np.nan_to_num(r - lo), np.nan_to_num(hi - r)]),
        fmt="o-",
        color="#222222",
        ms=6,
        capsize=3,
    )
    rho.set_title("Spearman ρ with Table 10's Δs", loc="left", fontsize=9, fontweight="bold", pad=14)
    rho.text(
        0,
        1.02,
        "95% bootstrap interval over the changes",
        transform=rho.transAxes,
        fontsize=7.5,
        color="#666666",
        va="bottom",
    )
    _axes(rho, budgets, None)
    rho.set_ylim(-1.05, 1.05)
    texts = {
        "filled": "● filled: the 95% paired t interval excludes 0",
        "hollow": "○ hollow: it does not",
        "cut": "▲▼ the interval runs past the axis",
        "paper": "- - paper Δ (ImageNet-1K, 300 epochs)",
    }
    key = [text for what, text in texts.items() if drawn.get(what)]
    fig.text(0.01, 0.01, "   ".join(key), fontsize=8, color="#444444", ha="left", va="bottom")
    return fig


def _axes(ax, budgets: list[int], reach: float | None) -> None:
    ax.set_xscale("log")
    ax.set_xticks(budgets)
    ax.set_xticklabels([str(b) for b in budgets])
    ax.minorticks_off()
    ax.set_xlim(budgets[0] / 1.6, budgets[-1] * 1.6)
    ax.set_xlabel("epochs", fontsize=8, labelpad=1)
    if reach is not None:
        ax.set_ylim(-reach, reach)
    ax.tick_params(labelsize=7.5)
    ax.grid(axis="y", color="#e4e4e4", lw=0.6)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
