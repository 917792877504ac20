"""What every figure of a report shares: style, colours and numbers of the steps, fonts,
text that fits its room, saving, the description line."""

from __future__ import annotations

import colorsys
import sys
import textwrap
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import matplotlib as mpl
import pandas as pd
from matplotlib import font_manager
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex, to_rgb
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.text import Text

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
OTHER_PHASE_COLORS = ["#56B4E9", "#882255", "#999933", "#44AA99", "#332288", "#AA4499", "#117733", "#661100"]
PAPER_COLOR = "#222222"
STATUS_COLORS = {"failed": "#C0392B", "missing": "#8a8a8a"}
# Fonts tried, in this order, for characters DejaVu Sans lacks (Chinese, Japanese, Korean,
# emoji): those installed join the font list, so matplotlib draws each character in the first
# font that has it. Colour emoji fonts (Noto Color Emoji) cannot be drawn by matplotlib.
FALLBACK_FONTS = (
    "Noto Sans CJK SC",
    "Noto Sans CJK JP",
    "Noto Sans CJK TC",
    "Noto Sans CJK KR",
    "Noto Sans SC",
    "Source Han Sans SC",
    "Source Han Sans",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "Droid Sans Fallback",
    "AR PL UMing CN",
    "AR PL UKai CN",
    "Noto Emoji",
    "Noto Sans Symbols 2",
    "Symbola",
    "Segoe UI Emoji",
    "Segoe UI Symbol",
    "Microsoft YaHei",
    "SimHei",
    "PingFang SC",
    "Hiragino Sans GB",
    "Arial Unicode MS",
)
BASE_FONT = "DejaVu Sans"
ELLIPSIS = "…"


@dataclass(frozen=True)
class StepKey:
    """How every figure of a study names and colours a step: `number` is its roadmap index
    where it has one (a second step of the same index gets a prime: 0′), "d1", "d2", … for the
    steps a study defines, "r1", … for reference models; `color` is its phase's hue, a shade of
    it per step of the phase."""

    number: str
    color: str


def phase_colors(frame: pd.DataFrame) -> dict[str, str]:
    """Each phase of the study its colour: the paper's phases their own, the others (a study's
    own) the unused ones of OTHER_PHASE_COLORS in order of appearance, so no two phases of a
    study share a colour while there are colours left."""
    phases = list(dict.fromkeys(str(p) for p in frame["phase"]))
    colors = {p: PHASE_COLORS[p] for p in phases if p in PHASE_COLORS}
    free = [c for c in OTHER_PHASE_COLORS if c not in colors.values()] or OTHER_PHASE_COLORS
    for k, phase in enumerate(p for p in phases if p not in colors):
        colors[phase] = free[k % len(free)]
    return colors


def _shade(color: str, k: int, n: int) -> str:
    """The k-th of n shades of a colour, dark to light (the colour itself when n is 1)."""
    if n <= 1:
        return color
    hue, light, sat = colorsys.rgb_to_hls(*to_rgb(color))
    spread = min(0.32, 0.08 * (n - 1))
    low = min(max(0.2, light - spread / 2), 0.68 - spread)  # neither near black nor too pale on white
    light = low + k / (n - 1) * spread
    return to_hex(colorsys.hls_to_rgb(hue, light, sat))


def step_keys(frame: pd.DataFrame) -> dict[str, StepKey]:
    """The number and colour of every step of a summary frame (rows of several budgets name a
    step once), shared by roadmap.png, the scatter plots, curves.png and budget.png."""
    rows = frame.drop_duplicates("step")
    colors = phase_colors(rows)
    by_phase: dict[str, list[str]] = {}
    for r in rows.itertuples(index=False):
        by_phase.setdefault("reference" if r.reference else str(r.phase), []).append(r.step)
    keys: dict[str, StepKey] = {}
    used: set[str] = set()
    defined = references = 0
    for r in rows.itertuples(index=False):
        if r.reference:
            references += 1
            number = f"r{references}"
        elif pd.isna(r.step_index):
            defined += 1
            number = f"d{defined}"
        else:
            number = str(int(r.step_index))
        while number in used:  # two roadmaps' steps of the same index
            number += "′"
        used.add(number)
        phase = "reference" if r.reference else str(r.phase)
        base = PHASE_COLORS["reference"] if r.reference else colors[phase]
        keys[r.step] = StepKey(number, _shade(base, by_phase[phase].index(r.step), len(by_phase[phase])))
    return keys


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


@cache
def font_family() -> tuple[str, ...]:
    """DejaVu Sans, then the installed fonts of FALLBACK_FONTS (matplotlib falls back along
    the list character by character)."""
    # a font removed since matplotlib's font cache was written is listed there but not on disk
    installed = {f.name for f in font_manager.fontManager.ttflist if Path(f.fname).is_file()}
    return (BASE_FONT, *(name for name in FALLBACK_FONTS if name in installed))


@cache
def _charmap(name: str) -> frozenset[int]:
    from matplotlib.ft2font import FT2Font

    path = font_manager.findfont(FontProperties(family=name), fallback_to_default=False)
    return frozenset(FT2Font(path).get_charmap())


def missing_glyphs(texts: list[str]) -> list[str]:
    """The characters of `texts` that no font of font_family() has, in order of appearance."""
    known = frozenset().union(*(_charmap(name) for name in font_family()))
    seen = dict.fromkeys(c for text in texts for c in text if not c.isspace() and ord(c) not in known)
    return list(seen)


_WARNED: set[str] = set()


def warn_missing_glyphs(fig: Figure) -> None:
    """One line on stderr, once per process and character, for the characters of a figure's
    text that no installed font has (matplotlib would warn once per character and figure)."""
    texts = [t.get_text() for t in fig.findobj(Text) if t.get_visible() and t.get_text()]
    new = [c for c in missing_glyphs(texts) if c not in _WARNED]
    if not new:
        return
    _WARNED.update(new)
    shown = "".join(new[:16]) + (ELLIPSIS if len(new) > 16 else "")
    print(
        f"warning: no installed font has {len(new)} character(s) of the figures' labels ({shown}); they are "
        "drawn as empty boxes. Install a font that has them (e.g. fonts-noto-cjk for Chinese, Japanese and "
        "Korean, fonts-symbola for emoji) and redraw: python runner.py plot",
        file=sys.stderr,
    )


@contextmanager
def figure_context() -> Iterator[None]:
    """The report's style and fonts, with matplotlib's missing-glyph warnings (one per
    character, figure and measurement) replaced by warn_missing_glyphs' one line."""
    with mpl.rc_context({**STYLE, "font.family": list(font_family())}), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from", category=UserWarning)
        yield


def base_family_where_it_suffices(fig: Figure) -> None:
    """Texts that DejaVu Sans draws whole name it alone, so the SVG of a study without CJK or
    emoji labels has the same bytes whichever fallback fonts a machine has installed."""
    base = _charmap(BASE_FONT)
    for text in fig.findobj(Text):
        if all(c.isspace() or ord(c) in base for c in text.get_text()):
            text.set_fontfamily([BASE_FONT])


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
    warn_missing_glyphs(fig)
    base_family_where_it_suffices(fig)
    with mpl.rc_context({"svg.hashsalt": "convnext-roadmap"}), warnings.catch_warnings():  # stable SVG ids
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from", category=UserWarning)
        atomic_write(
            path,
            lambda handle: fig.savefig(handle, format=fmt, dpi=150, facecolor="white", metadata=metadata),
            binary=True,
        )
    return path


def _font(size: float, weight: str = "normal", style: str = "normal") -> FontProperties:
    return FontProperties(family=list(mpl.rcParams["font.family"]), size=size, weight=weight, style=style)


def text_width(fig: Figure, text: str, size: float, weight: str = "normal", style: str = "normal") -> float:
    """The width of the widest line of `text` as a fraction of the figure's width."""
    renderer = fig.canvas.get_renderer()
    font = _font(size, weight, style)
    widest = max(
        (renderer.get_text_width_height_descent(line, font, ismath=False)[0] for line in str(text).split("\n") if line),
        default=0.0,
    )
    return widest / fig.bbox.width


def fit_text(
    fig: Figure, text: str, width: float, size: float, *, lines: int = 1, weight: str = "normal", style: str = "normal"
) -> str:
    """`text` broken at spaces (a word longer than a line, anywhere) into at most `lines` lines
    no wider than `width` (a fraction of the figure's width); what does not fit ends in "…"."""
    renderer = fig.canvas.get_renderer()
    font = _font(size, weight, style)
    room = width * fig.bbox.width

    def fits(line: str) -> bool:
        return renderer.get_text_width_height_descent(line, font, ismath=False)[0] <= room

    def longest(word: str, end: str = "") -> int:  # the most characters of `word` that fit with `end`
        low, high = 0, len(word)
        while low < high:
            mid = (low + high + 1) // 2
            low, high = (mid, high) if fits(word[:mid] + end) else (low, mid - 1)
        return low

    out: list[str] = []
    for paragraph in str(text).split("\n"):
        line = ""
        for word in paragraph.split():
            candidate = f"{line} {word}" if line else word
            if fits(candidate):
                line = candidate
                continue
            if line:
                out.append(line)
            line = word
            while not fits(line) and len(out) <= lines:  # a word longer than a line
                cut = max(1, longest(line))
                out.append(line[:cut])
                line = line[cut:]
        out.append(line)
    if len(out) <= lines:
        return "\n".join(out)
    last = out[lines - 1]
    last = last[: longest(last, ELLIPSIS)].rstrip()
    return "\n".join([*out[: lines - 1], last + ELLIPSIS])


@contextmanager
def recording_texts() -> Iterator[list[Text]]:
    """The texts drawn while in the context (by a save, say), in the order drawn."""
    drawn: list[Text] = []
    draw = Text.draw

    def record(self: Text, renderer: Any) -> None:
        if self.get_visible() and self.get_text().strip():
            drawn.append(self)
        draw(self, renderer)

    Text.draw = record  # type: ignore[method-assign]
    try:
        yield drawn
    finally:
        Text.draw = draw  # type: ignore[method-assign]


def outside_canvas(fig: Figure, drawn: list[Text] | None = None) -> list[str]:
    """The texts a draw of the figure draws that do not lie wholly inside its canvas (a 1 px
    margin for anti-aliasing): what the gallery test asks to be empty. Only drawn texts count
    (matplotlib keeps tick labels of ticks outside the view limits, undrawn): `drawn`, those
    recorded while the figure was saved as PNG (recording_texts), else those of a fresh draw."""
    if drawn is None:
        with recording_texts() as drawn:
            fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    bad = []
    for text in dict.fromkeys(t for t in drawn if t.get_figure(root=True) is fig):
        e = text.get_window_extent(renderer)
        if e.x0 < box.x0 - 1 or e.y0 < box.y0 - 1 or e.x1 > box.x1 + 1 or e.y1 > box.y1 + 1:
            bad.append(
                f"{text.get_text()[:40]!r} at x {e.x0:.0f}..{e.x1:.0f}, y {e.y0:.0f}..{e.y1:.0f} of "
                f"{box.x1:.0f} x {box.y1:.0f} px"
            )
    return bad


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
