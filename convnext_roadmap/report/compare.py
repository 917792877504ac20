"""Studies side by side: `python runner.py compare STUDY_A STUDY_B [...]`.

Per step, each study's top-1 (mean, std, seeds, 95% interval of the mean) and the difference
of every other study from the first, with its 95% interval: paired by seed when both studies
ran the same seeds (at least 2), else by Welch's t-test. Pairing is valid whenever the runs
are matched by seed, and narrower when the same seed means the same initial weights and
batches, as it does here for two recipes of one architecture on one data set (a seed fixes
every random draw of a run); Welch's test asks nothing of the seeds, nor that the spreads be
equal. Written to `<out>/compare_<A>_vs_<B>.csv` and `.md`, drawn to
`<plots>/compare_<A>_vs_<B>.png`; when the studies' configs differ, the `train.*` keys that
differ are listed with their values.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats

from ..errors import ConfigError
from ..store.files import atomic_write_text
from ..store.lookup import study_records
from ..store.record import Record
from .figures.style import figure_context, fit_text, new_figure, save
from .stats import t_interval

COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9"]  # Okabe-Ito


def mean_ci95(values: list[float]) -> float:
    """Half-width of the 95% t-interval of the mean (NaN below 2 values)."""
    if len(values) < 2:
        return math.nan
    return float(stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / math.sqrt(len(values)))


def welch(b: list[float], a: list[float]) -> tuple[float, float, float, float]:
    """mean(b) - mean(a), its 95% interval (Welch) and the two-sided p-value; NaN for the
    interval and p when either side has fewer than 2 runs."""
    if not a or not b:
        return (math.nan,) * 4
    delta = float(np.mean(b) - np.mean(a))
    if len(a) < 2 or len(b) < 2:
        return delta, math.nan, math.nan, math.nan
    if np.var(a) == 0 and np.var(b) == 0:  # no spread at all: the interval is the point
        return delta, delta, delta, 0.0 if delta else 1.0
    with warnings.catch_warnings():  # one side without spread: scipy warns of lost precision
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.ttest_ind(b, a, equal_var=False)
        interval = result.confidence_interval(0.95)
    return delta, float(interval.low), float(interval.high), float(result.pvalue)


def difference(b: dict[int, float], a: dict[int, float]) -> tuple[float, float, float, float, str]:
    """b - a by seed (keys are seeds): the mean difference, its 95% interval, the two-sided
    p-value and the test, "paired" when both ran the same >= 2 seeds, else "Welch"."""
    if len(a) >= 2 and set(a) == set(b):
        differences = np.array([b[s] - a[s] for s in sorted(a)])
        low, high = t_interval(differences)
        mean = float(differences.mean())
        if low == high:  # no spread: the interval is the point, as Welch's
            return mean, low, high, 0.0 if mean else 1.0, "paired"
        return mean, low, high, float(stats.ttest_1samp(differences, 0.0).pvalue), "paired"
    return (*welch(list(b.values()), list(a.values())), "Welch")


def _parent_deltas(recs: list[Record], slug: str, budget: int) -> tuple[str | None, dict[int, float]]:
    """A step's parent in one study and its paired Δ against it there, by seed."""
    mine = [r for r in recs if r.step == slug and r.budget == budget]
    parent = next((r.parent for r in mine if r.parent), None)
    if parent is None:
        return None, {}
    base = {int(r.seed): float(r.top1) for r in recs if r.step == parent and r.budget == budget}
    return parent, {int(r.seed): float(r.top1) - base[int(r.seed)] for r in mine if int(r.seed) in base}


def comparison_table(records: dict[str, list[Record]]) -> pd.DataFrame:
    """One row per step and budget (in roadmap order, steps of any study): top-1 per study and
    each later study's difference from the first; and where a step has the same parent in two
    studies, its Δ against that parent in each and the difference of those Δs (the question
    "is this change worth more here than there?"), paired by seed where both ran the same seeds."""
    names = list(records)
    steps: dict[tuple[str, int], tuple[int, str]] = {}
    for recs in records.values():
        for r in recs:
            steps.setdefault((r.step, r.budget), (10**6 if r.step_index is None else r.step_index, r.label or r.step))
    several = len({budget for _, budget in steps}) > 1
    rows = []
    for (slug, budget), (index, label) in sorted(steps.items(), key=lambda item: (item[1][0], item[0][0], item[0][1])):
        row: dict[str, Any] = {
            "step_index": index,
            "step": slug,
            "budget_epochs": budget,
            "label": label + (f" ({budget} ep)" if several else ""),
        }
        top1 = {
            name: {int(r.seed): float(r.top1) for r in recs if r.step == slug and r.budget == budget}
            for name, recs in records.items()
        }
        deltas = {name: _parent_deltas(recs, slug, budget) for name, recs in records.items()}
        for name in names:
            values = list(top1[name].values())
            row[f"{name}_n"] = len(values)
            row[f"{name}_top1_mean"] = float(np.mean(values)) if values else math.nan
            row[f"{name}_top1_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
            row[f"{name}_top1_ci95"] = mean_ci95(values)
            parent, delta = deltas[name]
            row[f"{name}_parent"] = parent
            row[f"{name}_delta_vs_parent"] = float(np.mean(list(delta.values()))) if delta else math.nan
        for name in names[1:]:
            delta, low, high, p, test = difference(top1[name], top1[names[0]])
            key = f"{name}_minus_{names[0]}"
            row[key], row[f"{key}_ci95_low"], row[f"{key}_ci95_high"], row[f"{key}_p"] = delta, low, high, p
            row[f"{key}_test"] = test
            (parent_a, delta_a), (parent_b, delta_b) = deltas[names[0]], deltas[name]
            key = f"{name}_minus_{names[0]}_delta"
            if parent_a and parent_a == parent_b and delta_a and delta_b:
                value, low, high, p, test = difference(delta_b, delta_a)
            else:  # the step's parent is not the same in both (or missing): no difference of Δs
                value = low = high = p = math.nan
                test = ""
            row[key], row[f"{key}_ci95_low"], row[f"{key}_ci95_high"], row[f"{key}_p"] = value, low, high, p
            row[f"{key}_test"] = test
        rows.append(row)
    return pd.DataFrame(rows)


def _values(records: list[Record], get: Any) -> list[Any]:
    seen: list[Any] = []
    for r in records:
        value = get(r)
        if value not in seen:
            seen.append(value)
    return seen


def config_differences(records: dict[str, list[Record]]) -> list[str]:
    """`train.KEY: A=value, B=value` for every train key (and the resolved precision and world
    size) whose value is not the same in every study; a study of several configs shows each."""
    getters: dict[str, Any] = {}
    keys = sorted({k for recs in records.values() for r in recs for k in (r.config or {})})
    for key in keys:
        getters[f"train.{key}"] = lambda r, key=key: r.config_value(key, "(absent)")
    getters["precision (as run)"] = lambda r: r.precision
    getters["world_size"] = lambda r: r.world_size
    lines = []
    for label, get in getters.items():
        per_study = {name: _values(recs, get) for name, recs in records.items()}
        distinct = {repr(v) for values in per_study.values() for v in values}
        if len(distinct) > 1:
            shown = ", ".join(
                f"{name}={' | '.join(_fmt_value(v) for v in values)}" for name, values in per_study.items()
            )
            lines.append(f"{label}: {shown}")
    return lines


def _fmt_value(value: Any) -> str:
    return "null" if value is None else str(value)


def _fmt(value: float, spec: str = ".2f", signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return format(value, ("+" if signed else "") + spec)


def markdown(table: pd.DataFrame, names: list[str]) -> str:
    header = (
        ["#", "step"]
        + [f"{n} top-1 % ± std (n)" for n in names]
        + [f"{n} − {names[0]} [95% CI]" for n in names[1:]]
        + [f"Δ parent in {n}" for n in names]
        + [f"Δ in {n} − Δ in {names[0]} [95% CI]" for n in names[1:]]
    )
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["--:", ":--"] + ["--:"] * (len(header) - 2)) + "|"]
    for _, row in table.iterrows():
        cells = [str(int(row["step_index"])) if row["step_index"] < 10**6 else "", row["step"]]
        for n in names:
            if row[f"{n}_n"] == 0:
                cells.append("—")
            else:
                std = "" if math.isnan(row[f"{n}_top1_std"]) else f" ± {row[f'{n}_top1_std']:.2f}"
                cells.append(f"{row[f'{n}_top1_mean']:.2f}{std} ({int(row[f'{n}_n'])})")
        for n in names[1:]:
            cells.append(_difference_cell(row, f"{n}_minus_{names[0]}"))
        for n in names:
            parent = row[f"{n}_parent"]
            cells.append(
                "—"
                if not isinstance(parent, str)
                else f"{_fmt(row[f'{n}_delta_vs_parent'], signed=True)} (vs {parent})"
            )
        for n in names[1:]:
            cells.append(_difference_cell(row, f"{n}_minus_{names[0]}_delta"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _difference_cell(row: pd.Series, key: str) -> str:
    interval = (
        ""
        if math.isnan(row[f"{key}_ci95_low"])
        else f" [{_fmt(row[f'{key}_ci95_low'], signed=True)}, {_fmt(row[f'{key}_ci95_high'], signed=True)}]"
    )
    test = f" ({row[f'{key}_test']})" if interval else ""
    return _fmt(row[key], signed=True) + interval + test


def draw(table: pd.DataFrame, names: list[str], differences: list[str], path: Path) -> Path:
    """compare_figure written to `path` (atomically)."""
    with figure_context():
        return save(compare_figure(table, names, differences), path)


def _readable_limits(
    mids: list[np.ndarray], lows: list[np.ndarray], highs: list[np.ndarray], zero: bool = False
) -> tuple[float, float]:
    """An axis that shows the means (and 0 when asked) and the intervals ending within the
    means' own spread beyond them; longer intervals (2 seeds give t intervals of tens of
    points) are cut at it, with an arrowhead (_interval)."""
    mid = np.concatenate([m[np.isfinite(m)] for m in mids] + [np.array([0.0] if zero else [])])
    if not len(mid):
        return 0.0, 1.0
    lo, hi = float(mid.min()), float(mid.max())
    span = max(hi - lo, 0.5)
    ends = np.concatenate([e[np.isfinite(e)] for e in lows + highs] + [np.array([])])
    lo = min([lo] + [e for e in ends if lo - span <= e < lo])
    hi = max([hi] + [e for e in ends if hi < e <= hi + span])
    pad = 0.08 * (hi - lo or 1.0)
    return lo - pad, hi + pad


def _interval(ax, x: np.ndarray, low: np.ndarray, high: np.ndarray, color: str) -> bool:
    """Intervals drawn within the axis' limits, an arrowhead where one runs past; whether any did."""
    y0, y1 = ax.get_ylim()
    cut = False
    for xi, lo, hi in zip(x, low, high, strict=True):
        if not (np.isfinite(lo) and np.isfinite(hi)):
            continue
        shown_lo, shown_hi = max(lo, y0), min(hi, y1)
        ax.plot([xi, xi], [shown_lo, shown_hi], color=color, lw=1.2, zorder=2)
        for end, shown, marker in ((lo, shown_lo, "v"), (hi, shown_hi, "^")):
            if end != shown:
                ax.plot([xi], [shown], marker=marker, color=color, ms=6, zorder=3, clip_on=False)
                cut = True
            else:
                ax.plot([xi - 0.08, xi + 0.08], [shown, shown], color=color, lw=1.2, zorder=2)
    return cut


def compare_figure(table: pd.DataFrame, names: list[str], differences: list[str]) -> Figure:
    """Top: per-step top-1 of each study (mean, 95% interval of the mean). Bottom: each later
    study minus the first, with its 95% interval (paired or Welch, as in the table); filled where
    the interval excludes 0. Each axis says which interval it draws; the legends sit above the
    panels, off the data."""
    n_steps = len(table)
    fig = new_figure((max(8.0, 0.45 * n_steps + 3), 8.5))
    top, bottom = fig.add_subplot(2, 1, 1), fig.add_subplot(2, 1, 2, sharex=None)
    x = np.arange(n_steps)
    width = min(0.18, 0.7 / max(len(names), 1))
    offsets = [(i - (len(names) - 1) / 2) * width for i in range(len(names))]
    means = [table[f"{name}_top1_mean"].to_numpy(float) for name in names]
    cis = [table[f"{name}_top1_ci95"].to_numpy(float) for name in names]
    low_y, high_y = _readable_limits(
        means, [m - c for m, c in zip(means, cis, strict=True)], [m + c for m, c in zip(means, cis, strict=True)]
    )
    top.set_ylim(max(low_y, 0.0), min(high_y, 100.5))  # a mean's interval may reach past 0-100%
    cut = False
    for i, name in enumerate(names):
        n = table[f"{name}_n"].to_numpy(int)
        counts = sorted(set(n[n > 0]))
        color = COLORS[i % len(COLORS)]
        cut |= _interval(top, x + offsets[i], means[i] - cis[i], means[i] + cis[i], color)
        top.plot(
            x + offsets[i],
            means[i],
            "o",
            color=color,
            ms=6,
            zorder=4,
            label=f"{name} (n = {', '.join(map(str, counts))} seed{'' if counts == [1] else 's'})",
        )
    top.set_ylabel("top-1 (%)\nmean ± 95% CI of the mean" + ("\n(▲▼ cut at the axis)" if cut else ""))
    top.set_title("per-step top-1", loc="left", fontsize=11)
    keys = [f"{m}_minus_{names[0]}" for m in names[1:]]
    bottom.set_ylim(
        *_readable_limits(
            [table[k].to_numpy(float) for k in keys],
            [table[f"{k}_ci95_low"].to_numpy(float) for k in keys],
            [table[f"{k}_ci95_high"].to_numpy(float) for k in keys],
            zero=True,
        )
    )
    cut_bottom = False
    for j, name in enumerate(names[1:], 1):
        key = f"{name}_minus_{names[0]}"
        offset = (j - 1 - (len(names) - 2) / 2) * width if len(names) > 2 else 0.0
        delta = table[key].to_numpy(float)
        low, high = table[f"{key}_ci95_low"].to_numpy(float), table[f"{key}_ci95_high"].to_numpy(float)
        color = COLORS[j % len(COLORS)]
        cut_bottom |= _interval(bottom, x + offset, low, high, color)
        excludes = (low > 0) | (high < 0)
        if excludes.any():
            bottom.scatter(
                (x + offset)[excludes],
                delta[excludes],
                color=color,
                s=40,
                zorder=3,
                label=f"{name} − {names[0]}: 95% CI excludes 0",
            )
        if (~excludes).any():
            bottom.scatter(
                (x + offset)[~excludes],
                delta[~excludes],
                facecolors="white",
                edgecolors=color,
                s=40,
                zorder=3,
                label=f"{name} − {names[0]}: CI includes 0 (or n < 2)",
            )
    bottom.axhline(0, color="#444444", lw=0.8)
    tests = sorted(
        {
            t
            for n in names[1:]
            for t, low in zip(table[f"{n}_minus_{names[0]}_test"], table[f"{n}_minus_{names[0]}_ci95_low"], strict=True)
            if not math.isnan(low)
        }
    )
    which = {
        ("paired",): "mean ± 95% CI paired by seed",
        ("Welch",): "mean ± 95% CI of the difference (Welch)",
        ("Welch", "paired"): "mean ± 95% CI: paired by seed, else Welch",
    }.get(tuple(tests), "(no interval: under 2 seeds)")
    bottom.set_ylabel(f"difference (points)\n{which}" + ("\n(▲▼ cut at the axis)" if cut_bottom else ""))
    bottom.set_title("difference from " + names[0], loc="left", fontsize=11)
    for ax in (top, bottom):  # the legend above the panel, right of its title: never over the data
        if ax.get_legend_handles_labels()[0]:
            ax.legend(
                loc="lower right",
                bbox_to_anchor=(1.0, 1.0),
                fontsize=9,
                frameon=False,
                ncol=len(ax.get_legend_handles_labels()[0]),
                borderaxespad=0.2,
            )
    several = table["budget_epochs"].nunique() > 1 if "budget_epochs" in table else False
    labels = []
    for i, slug, budget in zip(
        table["step_index"], table["step"], table.get("budget_epochs", [None] * n_steps), strict=True
    ):
        text = (f"{int(i)} {slug}" if i < 10**6 else str(slug)) + (f" ({int(budget)} ep)" if several else "")
        labels.append(text if len(text) <= 40 else text[:39] + "…")
    for ax in (top, bottom):
        ax.set_xticks(x)
        ax.set_xlim(-0.6, n_steps - 0.4)
        ax.grid(axis="y", color="#dddddd", lw=0.6)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    top.set_xticklabels([])
    rotate = n_steps > 4
    bottom.set_xticklabels(
        labels,
        rotation=35 if rotate else 0,
        ha="right" if rotate else "center",
        rotation_mode="anchor" if rotate else "default",
    )
    fig.suptitle(
        fit_text(fig, " vs ".join(names), 0.98, 13, weight="bold"), x=0.01, ha="left", fontsize=13, fontweight="bold"
    )
    note = ("configs differ in: " + "; ".join(differences)) if differences else "same train config"
    fig.text(0.01, 0.935, fit_text(fig, note, 0.98, 9), ha="left", va="top", fontsize=9, color="#444444")
    # Room below for the slanted step names, and on the left for the first ones' reach and the
    # axis labels: measured once laid out, the margins grown by what runs past the canvas.
    fig.subplots_adjust(left=0.08, right=0.98, top=0.87, bottom=0.08, hspace=0.3)
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    texts = [
        t
        for ax in (top, bottom)
        for t in [*ax.get_xticklabels(), *ax.get_yticklabels(), ax.yaxis.label]
        if t.get_visible() and t.get_text()
    ]
    boxes = [t.get_window_extent(renderer) for t in texts]
    axes_box = bottom.get_window_extent(renderer)
    below = max((axes_box.y0 - b.y0 for b in boxes), default=0.0) + 8
    reach = max((axes_box.x0 - b.x0 for b in boxes), default=0.0) + 8
    fig.subplots_adjust(
        left=min(0.3, max(0.08, reach / fig.bbox.width)), bottom=min(0.45, max(0.08, below / fig.bbox.height))
    )
    return fig


def compare_studies(names: list[str], out_dir: Path, plots_dir: Path) -> tuple[pd.DataFrame, list[Path]]:
    """Print the comparison and write its CSV, Markdown and PNG; returns the table and paths."""
    if len(names) < 2:
        raise ConfigError("compare needs two or more studies: python runner.py compare STUDY_A STUDY_B [...]")
    if len(set(names)) != len(names):
        raise ConfigError(f"compare: a study is named twice ({' '.join(names)})")
    records = {}
    for name in names:
        done = study_records(Path(out_dir) / name)
        if not done:
            raise ConfigError(f"study {name} has no finished runs in {Path(out_dir) / name / 'runs'}; train it first")
        records[name] = done
    table = comparison_table(records)
    differences = config_differences(records)
    text = markdown(table, names)
    about = (
        ("configs differ in:\n" + "\n".join(f"  {line}" for line in differences))
        if differences
        else "configs: the same train settings"
    )
    stem = "compare_" + "_vs_".join(names)
    csv_path, md_path = Path(out_dir) / f"{stem}.csv", Path(out_dir) / f"{stem}.md"
    atomic_write_text(csv_path, table.to_csv(index=False, float_format="%.4f"))
    atomic_write_text(md_path, f"# {' vs '.join(names)}\n\n{text}\n\n{about}\n")
    png = draw(table, names, differences, Path(plots_dir) / f"{stem}.png")
    print(
        f"{' vs '.join(names)}: per-step top-1; differences from {names[0]} with 95% intervals, paired by "
        "seed where both studies ran the same seeds, else Welch's\n"
    )
    print(text)
    print(f"\n{about}")
    for path in (csv_path, md_path, png):
        print(f"wrote {path}")
    return table, [csv_path, md_path, png]
