"""What every figure of a report shares: style, colours, saving, the description line."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib as mpl
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

PHASE_COLORS = {  # one hue per phase of Figure 2, colour-blind safe (Okabe-Ito)
    "baseline": "#7f7f7f",
    "macro design": "#0072B2",
    "ResNeXt-ify": "#009E73",
    "inverted bottleneck": "#CC79A7",
    "large kernel": "#E69F00",
    "micro design": "#D55E00",
    "reference": "#222222",
}
OTHER_PHASE_COLORS = ["#56B4E9", "#F0E442", "#999933", "#882255", "#44AA99", "#332288"]
PAPER_COLOR = "#222222"
STATUS_COLORS = {"failed": "#C0392B", "missing": "#8a8a8a"}


def phase_color(phase: str) -> str:
    """The phase's colour; a phase a study names itself gets a stable one of its own."""
    if phase in PHASE_COLORS:
        return PHASE_COLORS[phase]
    return OTHER_PHASE_COLORS[sum(map(ord, str(phase))) % len(OTHER_PHASE_COLORS)]


STYLE = {
    "font.size": 10, "axes.titlesize": 12, "axes.labelsize": 10.5, "legend.fontsize": 8.5,
    "xtick.labelsize": 9, "ytick.labelsize": 9.5, "axes.titleweight": "bold",
    "svg.fonttype": "none", "axes.axisbelow": True, "hatch.linewidth": 0.8,
}


def new_figure(size: tuple[float, float] = (10, 8)) -> Figure:
    """A pyplot-free figure: no global backend state, safe to call from any process."""
    fig = Figure(figsize=size, dpi=150)
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path: Path) -> Path:
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


def study_description(records: list[dict]) -> str:
    """One line saying what was trained, from the records themselves."""
    if not records:
        return "no runs recorded yet"

    def values(key: str) -> str:
        seen = sorted({str(r.get(key)) for r in records if r.get(key) is not None})
        return "/".join(seen) if seen else "?"

    seeds = sorted({int(r["seed"]) for r in records})
    epochs = values("epochs")
    return (f"study {values('study')}: {values('dataset')} at {values('resolution')} px, "
            f"{epochs} epoch{'' if epochs == '1' else 's'}, width ×{values('width_mult')}, preset "
            f"{values('preset')}, seeds {','.join(map(str, seeds))}, precision {values('precision')}")


def phase_spans(frame: pd.DataFrame) -> list[tuple[str, int, int]]:
    """(phase, first row, last row) of each run of equal phases, in row order."""
    spans: list[tuple[str, int, int]] = []
    for i, phase in enumerate(frame["phase"]):
        if spans and spans[-1][0] == phase:
            spans[-1] = (phase, spans[-1][1], i)
        else:
            spans.append((phase, i, i))
    return spans


def short_failure(records: list[dict], slug: str) -> str:
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
