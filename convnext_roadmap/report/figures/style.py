"""What every figure of a report shares: style, colours, saving, the description line."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import matplotlib as mpl
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ...store.files import atomic_write
from ...store.record import Record

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
    "font.size": 10,
    "axes.titlesize": 12,
    "axes.labelsize": 10.5,
    "legend.fontsize": 8.5,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9.5,
    "axes.titleweight": "bold",
    "svg.fonttype": "none",
    "axes.axisbelow": True,
    "hatch.linewidth": 0.8,
}


def new_figure(size: tuple[float, float] = (10, 8)) -> Figure:
    """A pyplot-free figure: no global backend state, safe to call from any process."""
    fig = Figure(figsize=size, dpi=150)
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path: Path) -> Path:
    """Write the figure whole or not at all (store.files.atomic_write). No date in the file:
    redrawing the same results gives the same bytes (clean git diffs)."""
    path = Path(path)
    fmt = path.suffix.lstrip(".")
    metadata = {"Date": None} if fmt in ("svg", "pdf") else None
    with mpl.rc_context({"svg.hashsalt": "convnext-roadmap"}):  # stable SVG ids
        atomic_write(
            path,
            lambda handle: fig.savefig(handle, format=fmt, dpi=150, facecolor="white", metadata=metadata),
            binary=True,
        )
    return path


def study_description(records: list[Record]) -> str:
    """One line saying what was trained, from the records themselves: the data actually used
    (its training and validation images: a train_subset or val_subset shows), its size, the
    budget, the width, the preset, the seeds and the precision."""
    if not records:
        return "no runs recorded yet"

    def values(key: str, of: Any = None) -> str:
        seen = sorted(
            {str(of(r) if of else getattr(r, key)) for r in records if (of(r) if of else getattr(r, key)) is not None},
            key=_natural,
        )
        return "/".join(seen) if seen else "?"

    seeds = sorted({int(r.seed) for r in records})
    epochs = values("budget", lambda r: r.budget)
    images = values("images", lambda r: f"{r.train_images}+{r.val_images}" if r.train_images else None)
    subsets = [
        f"{key} {value}"
        for key in ("train_subset", "val_subset")
        for value in sorted({r.config_value(key) for r in records} - {None}, key=str)
    ]
    data = f"{values('dataset')} ({images} images{', ' + ', '.join(subsets) if subsets else ''})"
    return (
        f"study {values('study')}: {data} at {values('resolution')} px, "
        f"{epochs} epoch{'' if epochs == '1' else 's'}, width ×{values('width_mult')}, preset "
        f"{values('preset')}, seeds {','.join(map(str, seeds))}, precision {values('precision')}"
    )


def _natural(text: str) -> tuple:
    """Sort '3' before '10'."""
    return (0, float(text)) if text.replace(".", "", 1).isdigit() else (1, text)


def wrap_text(text: str, width: int) -> str:
    """Text broken into lines of at most `width` characters, at spaces."""
    return textwrap.fill(str(text), width=width, break_long_words=True)


def phase_spans(frame: pd.DataFrame) -> list[tuple[str, int, int]]:
    """(phase, first row, last row) of each run of equal phases, in row order."""
    spans: list[tuple[str, int, int]] = []
    for i, phase in enumerate(frame["phase"]):
        if spans and spans[-1][0] == phase:
            spans[-1] = (phase, spans[-1][1], i)
        else:
            spans.append((phase, i, i))
    return spans


def short_failure(records: list[Record], slug: str) -> str:
    for r in records:
        if r.step == slug and not r.done:
            reason = str(r.failure or "").splitlines()
            reason = reason[0] if reason else ""
            epoch = r.failed_epoch
            text = "failed" + (f" at epoch {epoch}" if epoch is not None else "")
            if reason:
                text += f": {reason[:48]}{'…' if len(reason) > 48 else ''}"
            return text
    return "failed"
