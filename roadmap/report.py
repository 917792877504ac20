"""Tables and figures of a study, computed from its run records alone.

Every finished or failed (step, seed) run leaves one JSON record in
``results/<study>/runs/<slug>__seed<k>.json``; this module never trains anything, it only
reads those records (and the Lightning ``metrics.csv`` each one points to), so the report
can be rebuilt at any time, from any subset of runs, and always agrees with the records.

    from roadmap.report import draw_figures, write_tables
    frame = write_tables(Path("results/default"))          # results.csv + results.md
    draw_figures(Path("results/default"), Path("plots/default"))
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterable

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.transforms import blended_transform_factory

from convnext_steps import list_steps
from convnext_steps.roadmap import Step

from .records import current_records

__all__ = ["SUMMARY_COLUMNS", "FIGURE_NAMES", "load_records", "summarize", "welch_ci95",
           "t_quantile_975", "sweep_slugs", "markdown_table", "write_tables", "draw_figures"]

# The columns of results.csv, in order. A fixed list: other tools read the CSV by name.
SUMMARY_COLUMNS: list[str] = [
    "step_index", "step", "label", "phase", "parent", "status", "n_seeds",
    "top1_mean", "top1_std", "top5_mean", "top5_std",
    "delta_top1_vs_parent", "delta_top1_vs_parent_ci95",
    "delta_top1_vs_resnet50", "delta_top1_vs_resnet50_ci95",
    "params_m", "gmacs_train_res", "gmacs_224", "train_throughput", "eval_throughput",
    "wall_time_s", "paper_top1", "paper_top1_std", "paper_gflops", "paper_delta_vs_parent",
]

BASELINE = "resnet50"
FIGURE_NAMES = ("roadmap.png", "roadmap.svg", "accuracy_vs_gmacs.png",
                "accuracy_vs_throughput.png", "curves.png")
PHASE_COLORS = {  # one hue per phase of Figure 2, colour-blind safe (Okabe-Ito)
    "baseline": "#7f7f7f",
    "macro design": "#0072B2",
    "ResNeXt-ify": "#009E73",
    "inverted bottleneck": "#CC79A7",
    "large kernel": "#E69F00",
    "micro design": "#D55E00",
}
PAPER_COLOR = "#222222"
STATUS_COLORS = {"failed": "#C0392B", "missing": "#8a8a8a"}


# --------------------------------------------------------------------------- records

def load_records(study_dir: Path) -> list[dict]:
    """The finished and failed run records of the study's current config, sorted by (step
    index, seed). An unreadable record stops the report (records.CorruptRecordError) instead
    of silently dropping a seed; a "done" record without its numbers is left out."""
    records, _, _ = current_records(Path(study_dir))
    records = [r for r in records if r["status"] in ("done", "failed")]
    return sorted(records, key=lambda r: (_int(r.get("step_index"), 10**6),
                                          r["step"], _int(r.get("seed"), 0)))


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _float(value: Any) -> float:
    """A number from a record, NaN for null/missing/garbage (a failed run has no top-1)."""
    try:
        return float(value) if value is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


# --------------------------------------------------------------------------- statistics

def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                   -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                     + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_quantile_975(df: float) -> float:
    """t_{0.975, df} for any real df > 0 (Welch's df is fractional).

    scipy is not a dependency, so the two-sided tail I_{df/(df+t^2)}(df/2, 1/2) = 0.05 is
    solved by bisection; exact to ~1e-10, 12.706 at df=1, 4.303 at df=2, -> 1.960.
    """
    if not df > 0:
        return math.nan
    if math.isinf(df):
        return 1.959963984540054

    def tail(t: float) -> float:
        return _betainc(df / 2.0, 0.5, df / (df + t * t))

    lo, hi = 0.0, 16.0
    while tail(hi) > 0.05:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if tail(mid) > 0.05:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return 0.5 * (lo + hi)


def welch_ci95(a: Iterable[float], b: Iterable[float]) -> float:
    """Half-width of the 95% Welch t-interval on mean(a) - mean(b); NaN unless both have
    >= 2 values. With 2-3 seeds a difference is only meaningful relative to this width."""
    a = np.asarray([v for v in a if not math.isnan(v)], dtype=float)
    b = np.asarray([v for v in b if not math.isnan(v)], dtype=float)
    if len(a) < 2 or len(b) < 2:
        return math.nan
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se2 = va + vb
    if se2 == 0.0:
        return 0.0
    df = se2 ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return t_quantile_975(df) * math.sqrt(se2)


# --------------------------------------------------------------------------- summary

def sweep_slugs() -> set[str]:
    """The steps marked as sweep branches (kernel_5, kernel_9, kernel_11): off the main chain."""
    return {s.slug for s in list_steps() if s.sweep}


def summarize(records: list[dict], selected_slugs: list[str] | None = None) -> pd.DataFrame:
    """One row per roadmap step, in roadmap order, with the seed statistics and the paper's
    numbers side by side, so each step's measured effect can be read against Table 10.

    Rows: every step (``selected_slugs=None``) or the selected ones, plus any step that has
    records. Only ``done`` runs enter the accuracy statistics; a step is ``failed`` if it
    has records but none finished, ``missing`` if it has none.
    """
    steps = list_steps()
    by_slug = {s.slug: s for s in steps}
    if selected_slugs is not None:
        unknown = [s for s in selected_slugs if s not in by_slug]
        if unknown:
            raise ValueError(f"unknown step(s) {unknown}; known: {', '.join(by_slug)}")
    wanted = set(by_slug) if selected_slugs is None else set(selected_slugs)

    grouped: dict[str, list[dict]] = {}
    for record in records:
        grouped.setdefault(record["step"], []).append(record)
    wanted |= set(grouped)

    def top1s(slug: str | None) -> list[float]:
        return [_float(r.get("top1")) for r in grouped.get(slug, [])
                if r.get("status") == "done" and not math.isnan(_float(r.get("top1")))]

    rows = []
    # Roadmap steps first, in order; a record of an unknown step (a renamed one?) after them.
    ordered = [s.slug for s in steps if s.slug in wanted]
    ordered += sorted(wanted - set(by_slug),
                      key=lambda s: (_int(grouped[s][0].get("step_index"), 10**6), s))
    for slug in ordered:
        recs = grouped.get(slug, [])
        done = [r for r in recs if r.get("status") == "done"]
        step = by_slug.get(slug)
        first = recs[0] if recs else {}
        parent = step.parent if step else first.get("parent")
        acc = top1s(slug)
        top5 = [v for v in (_float(r.get("top5")) for r in done) if not math.isnan(v)]
        parent_acc, base_acc = top1s(parent), top1s(BASELINE)

        def mean(values: list[float]) -> float:
            return float(np.mean(values)) if values else math.nan

        def std(values: list[float]) -> float:
            return float(np.std(values, ddof=1)) if len(values) >= 2 else math.nan

        def field(name: str, pool: list[dict]) -> float:
            values = [v for v in (_float(r.get(name)) for r in pool) if not math.isnan(v)]
            return mean(values)

        paper_parent = by_slug.get(parent) if parent else None
        is_base = slug == BASELINE
        rows.append({
            "step_index": step.index if step else _int(first.get("step_index"), -1),
            "step": slug,
            "label": step.label if step else first.get("label", slug),
            "phase": step.phase if step else first.get("phase", ""),
            "parent": parent,
            "status": "done" if done else ("failed" if recs else "missing"),
            "n_seeds": len(done),
            "top1_mean": mean(acc), "top1_std": std(acc),
            "top5_mean": mean(top5), "top5_std": std(top5),
            "delta_top1_vs_parent": mean(acc) - mean(parent_acc) if parent else math.nan,
            "delta_top1_vs_parent_ci95": welch_ci95(acc, parent_acc) if parent else math.nan,
            # The baseline against itself is 0 by definition, not a two-sample comparison.
            "delta_top1_vs_resnet50": (0.0 if acc else math.nan) if is_base
            else mean(acc) - mean(base_acc),
            "delta_top1_vs_resnet50_ci95": math.nan if is_base else welch_ci95(acc, base_acc),
            # Architecture numbers do not depend on whether the run finished.
            "params_m": field("params", recs) / 1e6,
            "gmacs_train_res": field("gmacs_train_res", recs),
            "gmacs_224": field("gmacs_224", recs),
            "train_throughput": field("train_throughput", done),
            "eval_throughput": field("eval_throughput", done),
            # What the step cost, failed seeds included (NaN: nothing ran).
            "wall_time_s": float(sum(_float(r.get("wall_time_s")) for r in recs
                                     if not math.isnan(_float(r.get("wall_time_s")))))
            if recs else math.nan,
            "paper_top1": step.paper_top1 if step else math.nan,
            "paper_top1_std": step.paper_top1_std if step else math.nan,
            "paper_gflops": step.paper_gmacs if step else math.nan,
            "paper_delta_vs_parent": (step.paper_top1 - paper_parent.paper_top1
                                      if step and paper_parent else math.nan),
        })
    frame = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    return frame.astype({"step_index": int, "n_seeds": int})


# --------------------------------------------------------------------------- tables

def _fmt(value: float, spec: str = ".2f", signed: bool = False, empty: str = "—") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return empty
    return format(value, ("+" if signed else "") + spec)


def _fmt_delta(delta: float, ci: float) -> str:
    text = _fmt(delta, signed=True)
    return text if math.isnan(ci) or math.isnan(delta) else f"{text} ± {ci:.2f}"


def markdown_table(df: pd.DataFrame) -> str:
    """The summary as a GitHub markdown table, padded so it also reads in a terminal.

    Deltas carry the half-width of their 95% interval: with a few seeds, a step's effect
    is only a finding when it is larger than that.
    """
    sweep = sweep_slugs()
    header = ["#", "step", "label", "top-1 % ± std (n)", "Δ parent (± 95% CI)",
              "Δ ResNet-50 (± 95% CI)", "GMACs@224", "params", "img/s train",
              "paper top-1", "paper Δ"]
    right = [True, False, False, True, True, True, True, True, True, True, True]
    rows = []
    for r in df.itertuples(index=False):
        if r.status == "done" and not math.isnan(r.top1_mean):
            acc = f"{r.top1_mean:.2f}" + (f" ± {r.top1_std:.2f}" if r.n_seeds >= 2 else "")
            acc += f" ({r.n_seeds})"
        else:
            acc = {"failed": "failed", "missing": "not run"}.get(r.status, "no top-1")
        rows.append([
            str(r.step_index), str(r.step), str(r.label) + (" (sweep)" if r.step in sweep else ""),
            acc, _fmt_delta(r.delta_top1_vs_parent, r.delta_top1_vs_parent_ci95),
            _fmt_delta(r.delta_top1_vs_resnet50, r.delta_top1_vs_resnet50_ci95),
            _fmt(r.gmacs_224), _fmt(r.params_m) + ("" if math.isnan(r.params_m) else "M"),
            _fmt(r.train_throughput, ".0f"), _fmt(r.paper_top1),
            _fmt(r.paper_delta_vs_parent, signed=True),
        ])
    cells = [[c.replace("|", "\\|") for c in row] for row in [header] + rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return "| " + " | ".join(c.rjust(w) if al else c.ljust(w)
                                 for c, w, al in zip(row, widths, right)) + " |"

    sep = "|" + "|".join("-" * (w + 1) + ":" if al else ":" + "-" * (w + 1)
                         for w, al in zip(widths, right)) + "|"
    return "\n".join([line(cells[0]), sep] + [line(row) for row in cells[1:]]) + "\n"


def _atomic_write_text(path: Path, text: str) -> None:
    """Readers (a second terminal, a notebook) never see a half-written file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_tables(study_dir: Path, selected_slugs: list[str] | None = None) -> pd.DataFrame:
    """Write ``results.csv`` and ``results.md`` into the study directory; return the frame."""
    study_dir = Path(study_dir)
    study_dir.mkdir(parents=True, exist_ok=True)
    frame = summarize(load_records(study_dir), selected_slugs)
    _atomic_write_text(study_dir / "results.csv", frame.to_csv(index=False))
    _atomic_write_text(study_dir / "results.md", markdown_table(frame))
    return frame


# --------------------------------------------------------------------------- figures

_STYLE = {
    "font.size": 10, "axes.titlesize": 12, "axes.labelsize": 10.5, "legend.fontsize": 8.5,
    "xtick.labelsize": 9, "ytick.labelsize": 9.5, "axes.titleweight": "bold",
    "svg.fonttype": "none", "axes.axisbelow": True, "hatch.linewidth": 0.8,
}


def _new_figure(size: tuple[float, float] = (10, 8)) -> Figure:
    """A pyplot-free figure: no global backend state, safe to call from any process."""
    fig = Figure(figsize=size, dpi=150)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        # No date in the file: redrawing the same results gives the same bytes (clean git diffs).
        fmt = path.suffix.lstrip(".")
        metadata = {"Date": None} if fmt in ("svg", "pdf") else None
        with mpl.rc_context({"svg.hashsalt": "convnext-roadmap"}):  # stable SVG ids
            fig.savefig(tmp, format=fmt, dpi=150, facecolor="white", metadata=metadata)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _study_description(records: list[dict]) -> str:
    """One line saying what was trained, from the records themselves."""
    if not records:
        return "no runs recorded yet"

    def values(key: str) -> str:
        seen = sorted({str(r.get(key)) for r in records if r.get(key) is not None})
        return "/".join(seen) if seen else "?"

    seeds = sorted({_int(r.get("seed"), -1) for r in records})
    return (f"study {values('study')}: {values('dataset')} at {values('resolution')} px, "
            f"{values('epochs')} epochs, width ×{values('width_mult')}, preset "
            f"{values('preset')}, seeds {','.join(map(str, seeds))}, precision {values('precision')}")


def _short_failure(records: list[dict], slug: str) -> str:
    for r in records:
        if r["step"] == slug and r.get("status") != "done":
            reason = str(r.get("failure") or "").splitlines()
            reason = reason[0] if reason else ""
            epoch = r.get("failed_epoch")
            text = "failed" + (f" at epoch {epoch}" if epoch is not None else "")
            if reason:
                text += f": {reason[:48]}{'…' if len(reason) > 48 else ''}"
            return text
    return "failed"


def _phase_spans(frame: pd.DataFrame) -> list[tuple[str, int, int]]:
    """(phase, first row, last row) of each run of equal phases, in row order."""
    spans: list[tuple[str, int, int]] = []
    for i, phase in enumerate(frame["phase"]):
        if spans and spans[-1][0] == phase:
            spans[-1] = (phase, spans[-1][1], i)
        else:
            spans.append((phase, i, i))
    return spans


def _draw_roadmap(frame: pd.DataFrame, records: list[dict], subtitle: str) -> Figure:
    """Figure 2 of the paper redrawn with the measured accuracies."""
    fig = _new_figure((10, 8.6))
    fig.subplots_adjust(left=0.37, right=0.88, top=0.86, bottom=0.13)
    ax = fig.add_subplot()
    sweep = sweep_slugs()
    n = len(frame)
    ys = np.arange(n)
    done = (frame["status"] == "done") & frame["top1_mean"].notna()

    # Measured axis: zoomed to the data so that differences of a few tenths are visible.
    if done.any():
        lo = np.nanmin(frame.loc[done, "top1_mean"] - frame.loc[done, "top1_std"].fillna(0))
        hi = np.nanmax(frame.loc[done, "top1_mean"] + frame.loc[done, "top1_std"].fillna(0))
        span = max(hi - lo, 0.5)
        x0, x1 = lo - 0.45 * span, hi + 0.1 * span
    else:
        x0, x1 = 0.0, 100.0
    ax.set_xlim(x0, x1)
    ax.set_ylim(n - 0.4, -0.6)

    # Phase bands and brackets on the left, as in the paper.
    label_tf = blended_transform_factory(fig.transFigure, ax.transData)
    for k, (phase, first, last) in enumerate(_phase_spans(frame)):
        color = PHASE_COLORS.get(phase, "#999999")
        if k % 2 == 0:
            ax.axhspan(first - 0.5, last + 0.5, color="#f3f3f3", zorder=0, lw=0)  # = shaded
        ax.plot([0.135, 0.135], [first - 0.35, last + 0.35], transform=label_tf,
                color=color, lw=2.2, clip_on=False, solid_capstyle="butt")
        ax.text(0.125, (first + last) / 2, phase.replace(" ", "\n", 1) if len(phase) > 12
                else phase, transform=label_tf, ha="right", va="center", fontsize=9.5,
                color=color, fontweight="bold", linespacing=1.0)

    for y, r in zip(ys, frame.itertuples(index=False)):
        color = PHASE_COLORS.get(r.phase, "#999999")
        is_sweep = r.step in sweep
        if r.status == "done" and not math.isnan(r.top1_mean):
            ax.barh(y, r.top1_mean - x0, left=x0, height=0.66, color=color,
                    alpha=0.38 if is_sweep else 0.9, hatch="////" if is_sweep else None,
                    edgecolor=color, lw=0.8, zorder=2)
            err = 0.0 if math.isnan(r.top1_std) else r.top1_std
            if err:
                ax.errorbar(r.top1_mean, y, xerr=err, fmt="none", ecolor="#333333",
                            elinewidth=1.1, capsize=3, zorder=3)
            ax.annotate(f"{r.top1_mean:.2f}", (x0, y), xytext=(4, 0),
                        textcoords="offset points", ha="left", va="center", fontsize=8,
                        color="white" if not is_sweep else "#333333", fontweight="bold",
                        zorder=4)
            if r.n_seeds < frame["n_seeds"].max():  # fewer seeds than the others: say so
                ax.annotate(f"n={r.n_seeds}", (r.top1_mean + err, y), xytext=(4, 0),
                            textcoords="offset points", ha="left", va="center", fontsize=8,
                            color="#333333", style="italic", zorder=4)

    # GMACs at 224 px as a column on the right (printed on the bars it collides with markers).
    col_tf = blended_transform_factory(ax.transAxes, ax.transData)
    ax.text(1.065, -0.95, "GMACs\n@224", transform=col_tf, ha="center", va="bottom",
            fontsize=8.5, fontweight="bold", color="#333333", linespacing=1.0)
    for y, r in zip(ys, frame.itertuples(index=False)):
        ax.text(1.065, y, _fmt(r.gmacs_224), transform=col_tf,
                ha="center", va="center", fontsize=9,
                color="#333333" if r.status == "done" else "#999999")

    labels = []
    for r in frame.itertuples(index=False):
        labels.append(f"{r.label}  ·  sweep" if r.step in sweep else r.label)
    ax.set_yticks(ys, [f"{lab}  {i:>2}" for lab, i in zip(labels, frame["step_index"])])
    for tick, r in zip(ax.get_yticklabels(), frame.itertuples(index=False)):
        if r.step == "convnext_t" or r.step == BASELINE:
            tick.set_fontweight("bold")
        if r.step in sweep:
            tick.set_color("#666666")
            tick.set_style("italic")
    ax.tick_params(axis="y", length=0)
    ax.grid(axis="x", color="#dddddd", lw=0.7)
    for side in ("right",):
        ax.spines[side].set_visible(False)
    ax.set_xlabel("measured top-1 accuracy (%), mean ± std over seeds")

    # The paper's numbers on their own (top) axis: a different dataset, so its own scale.
    paper = ax.twiny()
    paper.plot(frame["paper_top1"], ys, "D", color=PAPER_COLOR, mfc="white",
               mec=PAPER_COLOR, ms=6, mew=1.5, zorder=5)
    pvals = frame["paper_top1"].dropna()
    if len(pvals):  # left margin: keeps the markers clear of the "not run" notes
        plo, phi = pvals.min(), pvals.max()
        pspan = max(phi - plo, 0.5)
        paper.set_xlim(plo - 0.25 * pspan, phi + 0.1 * pspan)
    # Steps without a result say why, on the top axes so that no marker covers the note.
    note_tf = blended_transform_factory(ax.transAxes, ax.transData)
    shaded = {row for k, (_, first, last) in enumerate(_phase_spans(frame)) if k % 2 == 0
              for row in range(first, last + 1)}
    for y, r in zip(ys, frame.itertuples(index=False)):
        if r.status != "done" or math.isnan(r.top1_mean):
            text = {"failed": _short_failure(records, r.step), "missing": "not run"}.get(
                r.status, "finished, but no top-1 recorded")
            paper.text(0.008, y, text, transform=note_tf, ha="left", va="center", fontsize=9,
                       style="italic", color=STATUS_COLORS.get(r.status, "#8a8a8a"), zorder=6,
                       bbox=dict(fc="#f3f3f3" if y in shaded else "white", ec="none",
                                 pad=1.0))
    paper.set_xlabel("paper: ImageNet-1K top-1 (%), Table 10", color=PAPER_COLOR)
    paper.spines["right"].set_visible(False)
    paper.set_ylim(ax.get_ylim())

    handles = [
        Patch(facecolor="#777777", edgecolor="#777777", label="measured top-1 (mean ± std)"),
        Patch(facecolor="#77777760", edgecolor="#777777", hatch="////",
              label="kernel-size sweep branch (off the main chain)"),
        Line2D([], [], marker="D", ls="none", color=PAPER_COLOR, mfc="white", ms=5.5,
               mew=1.4, label="paper ImageNet-1K top-1 (top axis)"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=3, frameon=False,
               bbox_to_anchor=(0.5, 0.0), columnspacing=1.4, handlelength=1.8)
    fig.text(0.5, 0.975, "The ResNet-50 → ConvNeXt-T roadmap, re-run", ha="center",
             va="top", fontsize=13, fontweight="bold")
    fig.text(0.5, 0.945, subtitle, ha="center",
             va="top", fontsize=9, color="#444444")
    return fig


def _place_labels(ax, xs: np.ndarray, ys: np.ndarray, texts: list[str], colors: list[str],
                  segments: list[tuple[tuple[float, float], tuple[float, float]]]) -> None:
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
            ann = ax.annotate(text, (xs[i], ys[i]), xytext=(dx, dy), textcoords="offset points",
                              fontsize=8.5, fontweight="bold", color=color, zorder=6)
            box = ann.get_window_extent(renderer)
            ann.remove()
            x0, y0, x1, y1 = box.x0 - 2, box.y0 - 2, box.x1 + 2, box.y1 + 2
            cost = 20.0 * sum(box.overlaps(b) for b in placed)
            near = ((pts[:, 0] > x0 - radius) & (pts[:, 0] < x1 + radius)
                    & (pts[:, 1] > y0 - radius) & (pts[:, 1] < y1 + radius))
            cost += 10.0 * near.sum()
            if len(obstacles):
                cost += 1.0 * ((obstacles[:, 0] > x0) & (obstacles[:, 0] < x1)
                               & (obstacles[:, 1] > y0) & (obstacles[:, 1] < y1)).sum()
            if not (ax_box.x0 <= x0 and x1 <= ax_box.x1 and ax_box.y0 <= y0 and y1 <= ax_box.y1):
                cost += 50.0
            cost += 0.05 * rank  # prefer near and to the right
            if cost < best_cost:
                best, best_cost = (dx, dy, box), cost
            if cost < 1.0:
                break
        dx, dy, box = best
        far = math.hypot(dx, dy) > 16
        ax.annotate(text, (xs[i], ys[i]), xytext=(dx, dy), textcoords="offset points",
                    fontsize=8.5, fontweight="bold", color=color, zorder=6,
                    arrowprops=dict(arrowstyle="-", color="#999999", lw=0.6, shrinkA=0,
                                    shrinkB=5) if far else None)
        placed.append(box)


def _draw_scatter(frame: pd.DataFrame, xcol: str, xlabel: str, title: str,
                  subtitle: str) -> Figure:
    """Measured top-1 against a cost, with the roadmap's path drawn parent -> child."""
    fig = _new_figure((10, 8))
    fig.subplots_adjust(left=0.09, right=0.68, top=0.88, bottom=0.09)
    ax = fig.add_subplot()
    sweep = sweep_slugs()
    ok = frame[(frame["status"] == "done") & frame[xcol].notna() & frame["top1_mean"].notna()]
    pos = {r.step: (getattr(r, xcol), r.top1_mean) for r in ok.itertuples(index=False)}
    parents = dict(zip(frame["step"], frame["parent"]))
    all_parents = {s.slug: s.parent for s in list_steps()} | parents

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
        ax.annotate("", xy=(x, y), xytext=pos[anc], zorder=1,
                    arrowprops=dict(arrowstyle="-|>", color="#b0b0b0", lw=1.0,
                                    ls="--" if (slug in sweep or not direct) else "-",
                                    shrinkA=6, shrinkB=6, mutation_scale=10))

    for r in ok.itertuples(index=False):
        color = PHASE_COLORS.get(r.phase, "#999999")
        is_sweep = r.step in sweep
        x = getattr(r, xcol)
        if not math.isnan(r.top1_std):
            segments.append(((x, r.top1_mean - r.top1_std), (x, r.top1_mean + r.top1_std)))
        ax.errorbar(x, r.top1_mean, yerr=0 if math.isnan(r.top1_std) else r.top1_std,
                    fmt="o", ms=8, color=color, mfc="white" if is_sweep else color,
                    mec=color, mew=1.8, ecolor=color, elinewidth=1.1, capsize=3, zorder=4)

    # Limits first (with margin for the labels), then labels, so their boxes are final.
    if len(ok):
        xv, yv = ok[xcol].to_numpy(float), ok["top1_mean"].to_numpy(float)
        ye = ok["top1_std"].fillna(0).to_numpy(float)
        xspan = max(xv.max() - xv.min(), abs(xv.max()) * 0.05, 1e-9)
        yspan = max((yv + ye).max() - (yv - ye).min(), 0.2)
        ax.set_xlim(xv.min() - 0.1 * xspan, xv.max() + 0.1 * xspan)
        ax.set_ylim((yv - ye).min() - 0.1 * yspan, (yv + ye).max() + 0.1 * yspan)
        _place_labels(ax, xv, yv, [str(i) for i in ok["step_index"]],
                      [PHASE_COLORS.get(p, "#999999") for p in ok["phase"]], segments)

    ax.grid(color="#e3e3e3", lw=0.7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("measured top-1 accuracy (%), mean ± std over seeds")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)

    # Key: index -> step, grouped by phase; steps without a result are listed greyed out.
    handles, bold, grey = [], [], []
    for phase, first, last in _phase_spans(frame):
        bold.append(len(handles))
        handles.append(Line2D([], [], ls="none", label=phase))
        for r in frame.iloc[first:last + 1].itertuples(index=False):
            color = PHASE_COLORS.get(r.phase, "#999999")
            shown = r.step in pos
            tag = "" if shown else {"failed": "  (failed)", "missing": "  (not run)"}.get(
                r.status, "  (no result)")
            if not shown:
                grey.append(len(handles))
            handles.append(Line2D([], [], marker="o" if shown else "x", ls="none", ms=6,
                                  color=color if shown else "#aaaaaa",
                                  mfc="white" if r.step in sweep else None, mew=1.5,
                                  label=f"{r.step_index:>2}  {r.label}"
                                  + (" (sweep)" if r.step in sweep else "") + tag))
    leg = fig.legend(handles=handles, loc="center left", bbox_to_anchor=(0.695, 0.48),
                     frameon=False, handletextpad=0.4, labelspacing=0.42, title="step",
                     title_fontproperties={"weight": "bold", "size": 9.5})
    leg._legend_box.align = "left"
    for k, txt in enumerate(leg.get_texts()):
        if k in bold:
            txt.set_fontweight("bold")
            txt.set_color(PHASE_COLORS.get(txt.get_text(), "#333333"))
        elif k in grey:
            txt.set_color("#999999")
    fig.text(0.09, 0.975, title, ha="left", va="top", fontsize=13, fontweight="bold")
    fig.text(0.09, 0.94, subtitle + "\nArrows: parent → child (dashed: sweep branch or "
             "via an unmeasured step); open markers: kernel sweep.", ha="left", va="top",
             fontsize=8.5, color="#444444")
    return fig


def _metrics_csv(study_dir: Path, record: dict) -> Path | None:
    log_dir = record.get("log_dir")
    if not log_dir:
        return None
    base = Path(study_dir) / log_dir
    if (base / "metrics.csv").is_file():
        return base / "metrics.csv"
    if base.is_dir():  # e.g. log_dir one level above Lightning's version_<k>/
        found = sorted(base.rglob("metrics.csv"))
        return found[-1] if found else None
    return None


def _val_curve(path: Path, epochs: Any = None) -> pd.Series | None:
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
        total = _float(epochs)
        total = total if total > 0 else len(top1)
        x = (np.arange(len(top1)) + 1) * total / len(top1)
    if np.nanmax(top1) <= 1.0:  # logged as a fraction, not percent
        top1 = top1 * 100.0
    return pd.Series(top1, index=np.round(x, 6)).groupby(level=0).mean()


def _draw_curves(frame: pd.DataFrame, curves: dict[str, pd.Series], subtitle: str) -> Figure:
    """Validation top-1 per epoch: full run on top, the second half zoomed below."""
    fig = _new_figure((10, 8))
    fig.subplots_adjust(left=0.08, right=0.7, top=0.85, bottom=0.08, hspace=0.32)
    full, zoom = fig.add_subplot(2, 1, 1), fig.add_subplot(2, 1, 2)
    sweep = sweep_slugs()
    cmap = mpl.colormaps["turbo"]  # ordered, yet 16 neighbours stay distinguishable
    n_total = max(len(list_steps()) - 1, 1)
    last_x = max(float(c.index.max()) for c in curves.values())
    tail_vals = []
    for r in frame.itertuples(index=False):
        curve = curves.get(r.step)
        if curve is None:
            continue
        color = cmap(0.05 + 0.9 * r.step_index / n_total)
        style = dict(color=color, lw=1.6, ls="--" if r.step in sweep else "-",
                     marker="o" if len(curve) <= 30 else None, ms=2.5)
        full.plot(curve.index, curve.to_numpy(), **style,
                  label=f"{r.step_index:>2}  {r.label}" + (" (sweep)" if r.step in sweep else ""))
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
    fig.legend(loc="center left", bbox_to_anchor=(0.715, 0.5), frameon=False,
               title="step (mean over seeds)", title_fontproperties={"weight": "bold",
                                                                      "size": 9.5})
    fig.text(0.08, 0.975, "Validation top-1 during training", ha="left", va="top",
             fontsize=13, fontweight="bold")
    fig.text(0.08, 0.94, subtitle + "\nDashed: kernel-size sweep branch. Colour follows the "
             "step index.", ha="left", va="top", fontsize=8.5, color="#444444")
    return fig


def draw_figures(study_dir: Path, plots_dir: Path, title: str | None = None,
                 selected_slugs: list[str] | None = None) -> list[Path]:
    """Draw the study's figures into plots_dir (atomically) and return the written paths.

    roadmap.png/.svg always (Figure 2 redrawn; unrun steps say so), then, when runs have
    finished: accuracy_vs_gmacs.png, accuracy_vs_throughput.png and curves.png.
    ``title`` replaces the description line derived from the records.
    """
    study_dir, plots_dir = Path(study_dir), Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    records = load_records(study_dir)
    frame = summarize(records, selected_slugs)
    subtitle = title or _study_description(records)
    written: list[Path] = []
    with mpl.rc_context(_STYLE):
        fig = _draw_roadmap(frame, records, subtitle)
        written += [_save(fig, plots_dir / "roadmap.png"), _save(fig, plots_dir / "roadmap.svg")]
        if not (frame["status"] == "done").any():
            return written
        for xcol, xlabel, name, heading in (
                ("gmacs_224", "GMACs at 224 × 224 px (multiply-adds, ×10⁹)",
                 "accuracy_vs_gmacs.png", "Accuracy vs compute"),
                ("train_throughput", "measured training throughput (images / s)",
                 "accuracy_vs_throughput.png", "Accuracy vs training speed")):
            if frame.loc[frame["status"] == "done", xcol].notna().any():
                fig = _draw_scatter(frame, xcol, xlabel, heading, subtitle)
                written.append(_save(fig, plots_dir / name))
        curves: dict[str, pd.Series] = {}
        for slug in frame.loc[frame["status"] == "done", "step"]:
            per_seed = []
            for record in records:
                if record["step"] == slug and record.get("status") == "done":
                    path = _metrics_csv(study_dir, record)
                    curve = _val_curve(path, record.get("epochs")) if path else None
                    if curve is not None:
                        per_seed.append(curve)
            if per_seed:  # mean over the seeds at each validation point they share
                curves[slug] = pd.concat(per_seed, axis=1).mean(axis=1).sort_index()
        if curves:
            written.append(_save(_draw_curves(frame, curves, subtitle), plots_dir / "curves.png"))
    return written
