"""compare: every pair of shipped studies, and the difference of a change's Δ between studies."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import pytest
from helpers import record
from scipy import stats

from convnext_roadmap.report.compare import compare_studies, comparison_table

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p.parent.name for p in (ROOT / "results").glob("*/study.json"))


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    for name in SHIPPED:
        shutil.copytree(
            ROOT / "results" / name,
            out / name,
            ignore=shutil.ignore_patterns("logs", "checkpoints", "weights", "locks"),
        )
    return out


@pytest.mark.parametrize("pair", list(itertools.combinations(SHIPPED, 2)), ids="-vs-".join)
def test_compare_works_on_every_pair_of_shipped_studies(shipped, tmp_path, pair, capsys):
    table, paths = compare_studies(list(pair), shipped, tmp_path)
    assert len(table) and all(p.is_file() for p in paths)
    assert "Traceback" not in capsys.readouterr().err


def test_the_difference_of_deltas_is_paired_by_seed():
    def study(child, parent):
        return [record(step="c", parent="p", seed=s, top1=v) for s, v in enumerate(child)] + [
            record(step="p", seed=s, top1=v) for s, v in enumerate(parent)
        ]

    a = study([80.0, 81.0, 82.5], [79.0, 80.5, 81.0])
    b = study([84.0, 86.0, 85.0], [82.0, 83.5, 84.2])
    row = comparison_table({"a": a, "b": b}).set_index("step").loc["c"]
    delta_a, delta_b = [1.0, 0.5, 1.5], [2.0, 2.5, 0.8]
    assert row["a_delta_vs_parent"] == pytest.approx(sum(delta_a) / 3)
    d = [y - x for x, y in zip(delta_a, delta_b, strict=True)]
    assert row["b_minus_a_delta"] == pytest.approx(sum(d) / 3)
    assert (row["b_minus_a_delta_ci95_low"], row["b_minus_a_delta_ci95_high"]) == pytest.approx(
        tuple(stats.ttest_1samp(d, 0.0).confidence_interval(0.95))
    )
    assert row["b_minus_a_delta_test"] == "paired"
    other = study([80.0, 81.0, 82.5], [79.0, 80.5, 81.0])
    for r in other:
        if r.step == "c":
            r.parent = "q"  # another parent: no difference of Δs
    row = comparison_table({"a": a, "b": other}).set_index("step").loc["c"]
    assert row["b_minus_a_delta_test"] == "" and row["b_minus_a_delta"] != row["b_minus_a_delta"]
