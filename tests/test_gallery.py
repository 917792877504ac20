"""The figure gallery: small made-up studies that stress every figure (1 seed, 2 seeds, 1 step,
40 steps, 200-character labels, Chinese and emoji labels, defined steps only, reference models
only, 3 budgets), drawn from records alone. Every text of every figure must lie inside its
canvas, and redrawing must give the same bytes.

To look at them: GALLERY=/tmp/gallery .venv/bin/python -m pytest -q tests/test_gallery.py
(the PNGs of each study go to $GALLERY/<study>/)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from helpers import make_record, write_manifest

from convnext_roadmap.report import FIGURE_NAMES, draw_figures, study_figures
from convnext_roadmap.report.compare import compare_figure, comparison_table
from convnext_roadmap.report.figures.style import figure_context, outside_canvas, recording_texts, save
from convnext_roadmap.report.summary import load_records
from convnext_steps import derive_step, get_step, list_steps

ROADMAP = list_steps("resnet50")
R200 = list_steps("resnet200")
BASE = get_step("convnext_t")
LONG = (
    "a change described at great length, as a user of the study might write it when the label is the only "
    "place the change is named: kernel 9, GELU, BatchNorm, layer scale 1e-6, and a stem of patch size 2."
)
assert len(LONG) == 200


def chain_top1(k: int, seed: int, rng: np.random.Generator, noise: float = 0.3) -> float:
    """A made-up top-1: a slow climb along the rows, seed noise, a dip every fourth step."""
    return round(80.0 + 0.25 * k - (1.2 if k % 4 == 3 else 0.0) + rng.normal(0, noise) + 0.2 * seed, 3)


def build(
    root: Path,
    name: str,
    steps,
    seeds,
    *,
    noise: float = 0.3,
    description: str = "",
    budgets=None,
    failed: tuple[str, ...] = (),
    missing: tuple[str, ...] = (),
    at_chance: tuple[str, ...] = (),
) -> Path:
    """A study folder of made-up records (and their metrics.csv) for these steps and seeds."""
    study = root / name
    rng = np.random.default_rng(sum(map(ord, name)))
    for budget in budgets or [None]:
        lift = 0.0 if budget is None else 3.0 * np.log(budget)
        for k, step in enumerate(steps):
            if step.slug in missing:
                continue
            for seed in seeds:
                top1 = None if step.slug in failed else min(99.0, chain_top1(k, seed, rng, noise) + lift)
                if step.slug in at_chance and top1 is not None:
                    top1 = 10.4
                make_record(
                    study,
                    step,
                    seed,
                    top1,
                    rng=rng,
                    budget=budget,
                    gmacs_224=round(4.0 + 0.05 * (k % 5), 2) if k % 3 else 4.15,
                    train_throughput=900.0 - 13 * k,
                )
    write_manifest(study, steps, seeds, description=description, budgets=budgets)
    return study


def defined_chain(n: int, label=lambda k: f"defined step {k}", phase=lambda k: "defined") -> list:
    """n steps derived from ConvNeXt-T: a chain, with every third step a sibling of its
    grandparent (its parent is not the row above)."""
    steps = []
    changes = [
        {"kernel_size": 9},
        {"activation": "relu"},
        {"norm": "batch"},
        {"kernel_size": 5},
        {"layer_scale_init": 1e-4},
        {"patch_size": 2},
        {"base_width": 64},
        {"kernel_size": 3},
    ]
    for k in range(n):
        parent = BASE if k < 2 else (steps[k - 2] if k % 3 == 2 else steps[k - 1])
        change = changes[k % len(changes)]
        if all(getattr(parent.spec, f) == v for f, v in change.items()):
            change = {"layer_scale_init": 10.0 ** -(k + 2)}
        steps.append(derive_step(parent, f"gallery_d{k}", change, label=label(k), phase=phase(k)))
    return steps


def gallery(root: Path) -> dict[str, Path]:
    """Every study of the gallery, by name."""
    studies = {
        "one_seed": build(root, "one_seed", [*ROADMAP, get_step("swin_t")], [0]),
        "two_seeds": build(root, "two_seeds", ROADMAP, [0, 1], noise=1.5),
        "one_step": build(root, "one_step", [BASE], [0, 1, 2]),
        "forty_steps": build(
            root,
            "forty_steps",
            [*ROADMAP, *R200, *defined_chain(8)],
            [0, 1, 2],
            failed=("kernel_9",),
            missing=("r200_gelu",),
            at_chance=("r200_kernel_5",),
        ),
        "long_labels": build(
            root,
            "long_labels",
            [BASE, *defined_chain(5, lambda k: f"{k}: {LONG}", lambda k: f"phase {k % 2} {LONG}")],
            [0, 1, 2],
            description=LONG,
        ),
        "non_latin": build(
            root,
            "non_latin",
            [BASE, *defined_chain(4, lambda k: f"大卷积核 {k} 🚀 ✓ 激活函数", lambda k: "微观设计 🧪")],
            [0, 1, 2],
            description="中文说明 🚀",
        ),
        "defined_only": build(root, "defined_only", defined_chain(6), [0, 1, 2, 3]),
        "references_only": build(root, "references_only", [get_step("swin_t"), get_step("swin_b")], [0, 1, 2]),
        "three_budgets": build(
            root, "three_budgets", [*ROADMAP[:4], BASE, *defined_chain(2)], [0, 1, 2], budgets=[1, 3, 10]
        ),
    }
    return studies


# Redrawn a second time to compare bytes (each path of the figures: fallback fonts, budgets, cut
# intervals and off-axis points, every kind of step); the others are drawn once, for time.
REDRAWN = ("forty_steps", "non_latin", "three_budgets")


@pytest.fixture(scope="module")
def studies(tmp_path_factory) -> dict[str, Path]:
    return gallery(tmp_path_factory.mktemp("gallery"))


@pytest.mark.parametrize(
    "name",
    [
        "one_seed",
        "two_seeds",
        "one_step",
        "forty_steps",
        "long_labels",
        "non_latin",
        "defined_only",
        "references_only",
        "three_budgets",
    ],
)
@pytest.mark.slow
def test_every_text_inside_the_canvas_and_the_same_bytes_twice(studies, name, tmp_path, capsys):
    study = studies[name]
    out = Path(os.environ["GALLERY"]) / name if os.environ.get("GALLERY") else tmp_path / "first"
    out.mkdir(parents=True, exist_ok=True)
    first = {}
    with figure_context():
        figures = study_figures(study)
        for stem, fig in figures:  # as draw_figures saves them, the texts' places checked as drawn in the PNG
            with recording_texts() as drawn:
                first[f"{stem}.png"] = save(fig, out / f"{stem}.png").read_bytes()
            assert not outside_canvas(fig, drawn), f"{stem}: text outside the canvas: {outside_canvas(fig, drawn)}"
            if stem.startswith("roadmap"):
                first[f"{stem}.svg"] = save(fig, out / f"{stem}.svg").read_bytes()
    names = {stem for stem, _ in figures}
    if name == "three_budgets":
        assert {"budget", "roadmap_1ep", "roadmap_3ep", "roadmap_10ep", "curves_10ep"} <= names
    else:
        assert set(FIGURE_NAMES) <= set(first)
    if name in REDRAWN:
        again = {p.name: p.read_bytes() for p in draw_figures(study, tmp_path / "again")}
        assert first == again, "the same records draw the same bytes"
    err = capsys.readouterr().err
    assert "Glyph" not in err and err.count("warning:") <= 1


def test_compare_of_two_gallery_studies_inside_the_canvas(studies):
    records = {name: load_records(studies[name]) for name in ("one_seed", "two_seeds")}
    table = comparison_table(records)
    with figure_context():
        fig = compare_figure(table, list(records), ["train.epochs: one_seed=4, two_seeds=4"])
        assert not outside_canvas(fig)
        if os.environ.get("GALLERY"):
            save(fig, Path(os.environ["GALLERY"]) / "compare_one_seed_vs_two_seeds.png")


def test_latin_labels_name_one_font_whatever_fallbacks_are_installed(studies, tmp_path, monkeypatch):
    """The SVG keeps its text as text: a fallback font installed on one machine (here DejaVu
    Serif stands in for a CJK font) must not change the bytes of a study without CJK labels."""
    from convnext_roadmap.report.figures import style

    plain = draw_figures(studies["one_step"], tmp_path / "plain")
    monkeypatch.setattr(style, "font_family", lambda: (style.BASE_FONT, "DejaVu Serif"))
    fallback = draw_figures(studies["one_step"], tmp_path / "fallback")
    svg = (tmp_path / "fallback" / "roadmap.svg").read_text()
    assert "DejaVu Serif" not in svg
    assert [p.read_bytes() for p in plain] == [p.read_bytes() for p in fallback]
