"""The study report: records -> results.csv / runs.csv / results.md / figures, on made-up records."""

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import make_record, write_manifest
from scipy import stats

from convnext_roadmap.report import (
    SUMMARY_COLUMNS,
    draw_figures,
    load_records,
    markdown_table,
    paired_delta,
    prob_improvement,
    seeds_to_resolve,
    summarize,
    summary_line,
    write_tables,
)
from convnext_roadmap.report.figures.style import study_description
from convnext_roadmap.report.summary import study_steps
from convnext_steps import derive_step, get_step, list_steps

STEPS = list_steps()
FAILED = "layer_norm"  # both seeds failed
MISSING = "kernel_11"  # never run
PARTIAL = "gelu"  # seed 0 done, seed 1 failed

CSV_COLUMNS = [
    "order",
    "step",
    "budget_epochs",
    "step_index",
    "label",
    "phase",
    "parent",
    "sweep",
    "reference",
    "status",
    "n_seeds",
    "n_did_not_learn",
    "top1_mean",
    "top1_std",
    "top5_mean",
    "top5_std",
    "delta_vs_parent",
    "delta_vs_parent_ci_low",
    "delta_vs_parent_ci_high",
    "delta_vs_parent_boot_low",
    "delta_vs_parent_boot_high",
    "prob_improvement_vs_parent",
    "resolved",
    "n_pairs",
    "params_m",
    "width_mult",
    "gmacs_train_res",
    "gmacs_224",
    "train_throughput",
    "eval_throughput",
    "wall_time_s",
    "paper_top1",
    "paper_top1_std",
    "paper_gflops",
    "paper_delta_vs_parent",
]


def fake_top1(index: int, seed: int) -> float:
    """Made-up accuracies: a slow climb along the roadmap, +-0.1 between the two seeds."""
    return round(90.0 + 0.2 * index + (0.1 if seed == 0 else -0.1) + 0.03 * (index % 3), 4)


def make_study(root: Path, seeds=(0, 1)) -> Path:
    """A study directory as the runner leaves it (manifest, records, metrics.csv), no training."""
    study = root / "synthetic"
    study.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for step in STEPS:
        if step.slug == MISSING:
            continue
        for seed in seeds:
            failed = step.slug == FAILED or (step.slug == PARTIAL and seed == 1)
            make_record(study, step, seed, None if failed else fake_top1(step.index, seed), rng=rng)
    write_manifest(study, STEPS, seeds)
    return study


@pytest.fixture
def study(tmp_path: Path) -> Path:
    return make_study(tmp_path)


def test_paired_statistics_match_scipy_on_known_inputs():
    child = {0: 80.0, 1: 80.6, 2: 79.9, 3: 80.4, 4: 80.2, 5: 81.0}
    parent = {0: 79.5, 1: 80.0, 2: 79.8, 3: 79.6, 4: 80.3, 5: 80.1, 9: 50.0}  # seed 9: not shared
    d = paired_delta(child, parent)
    x, y = [child[k] for k in range(6)], [parent[k] for k in range(6)]
    assert d.n == 6 and d.mean == pytest.approx(np.mean(np.subtract(x, y)))
    low, high = stats.ttest_rel(x, y).confidence_interval(0.95)
    assert (d.ci_low, d.ci_high) == (pytest.approx(low), pytest.approx(high))
    assert d.resolved == (low > 0 or high < 0)
    assert d.boot_low < d.mean < d.boot_high  # 6 pairs: a bootstrap interval too
    wins = sum((a > b) + 0.5 * (a == b) for a in x for b in y)
    assert d.prob_improvement == pytest.approx(wins / 36) == prob_improvement(x, y)
    few = paired_delta({0: 1.0, 1: 2.0}, {0: 0.0, 1: 0.5})
    assert few.n == 2 and math.isnan(few.boot_low)  # fewer than 5 pairs: no bootstrap
    assert (few.ci_low, few.ci_high) == tuple(
        pytest.approx(v) for v in stats.ttest_rel([1.0, 2.0], [0.0, 0.5]).confidence_interval()
    )
    one = paired_delta({0: 1.0}, {0: 0.0})
    assert one.mean == 1.0 and math.isnan(one.ci_low) and one.resolved is None
    # seeds to resolve: the smallest n with t(n-1) sd / sqrt(n) < delta
    n = seeds_to_resolve(1.0, 0.5)
    assert stats.t.ppf(0.975, n - 1) / math.sqrt(n) < 0.5 <= stats.t.ppf(0.975, n - 2) / math.sqrt(n - 1)


def test_csv_schema_status_and_seed_counts(study: Path):
    frame = write_tables(study)
    csv = pd.read_csv(study / "results.csv")
    assert list(csv.columns) == CSV_COLUMNS == SUMMARY_COLUMNS
    assert list(frame.columns) == CSV_COLUMNS
    assert list(csv["step"]) == [s.slug for s in STEPS]
    status = dict(zip(csv["step"], csv["status"], strict=True))
    seeds = dict(zip(csv["step"], csv["n_seeds"], strict=True))
    assert status[FAILED] == "failed" and seeds[FAILED] == 0
    assert status[MISSING] == "missing" and seeds[MISSING] == 0
    assert status[PARTIAL] == "done" and seeds[PARTIAL] == 1
    assert all(seeds[s.slug] == 2 for s in STEPS if s.slug not in (FAILED, MISSING, PARTIAL))
    assert not list(study.glob(".*tmp*")), "temporary files are cleaned up"
    assert math.isnan(csv.set_index("step").loc[MISSING, "wall_time_s"])
    row = csv.set_index("step").loc[FAILED]
    assert math.isnan(row["top1_mean"]) and row["wall_time_s"] == pytest.approx(201.0)
    assert row["params_m"] == pytest.approx(20 + 14 * 0.1)
    runs = pd.read_csv(study / "runs.csv")
    assert len(runs) == 2 * (len(STEPS) - 1) and set(runs["seed"]) == {0, 1}
    assert runs.set_index(["step", "seed"]).loc[("resnet50", 1), "top1"] == fake_top1(0, 1)


def test_deltas_are_paired_against_the_declared_parent(study: Path):
    frame = summarize(load_records(study), study_steps(study, [])).set_index("step")
    a = [fake_top1(2, 0), fake_top1(2, 1)]  # patchify_stem
    b = [fake_top1(1, 0), fake_top1(1, 1)]  # its parent, stage_ratio
    row = frame.loc["patchify_stem"]
    assert row["top1_mean"] == pytest.approx(np.mean(a))
    assert row["top1_std"] == pytest.approx(np.std(a, ddof=1))
    assert row["delta_vs_parent"] == pytest.approx(np.mean(np.subtract(a, b)))
    low, high = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert row["delta_vs_parent_ci_low"] == pytest.approx(low)
    assert row["delta_vs_parent_ci_high"] == pytest.approx(high)
    assert row["n_pairs"] == 2 and math.isnan(row["delta_vs_parent_boot_low"])
    assert row["paper_delta_vs_parent"] == pytest.approx(79.51 - 79.36)
    assert row["paper_gflops"] == 4.42
    # Sweep branches compare against move_up_dwconv; the chain resumes from kernel_7.
    assert frame.loc["kernel_9", "parent"] == "move_up_dwconv" and frame.loc["kernel_9", "sweep"]
    assert frame.loc["kernel_9", "delta_vs_parent"] == pytest.approx(
        frame.loc["kernel_9", "top1_mean"] - frame.loc["move_up_dwconv", "top1_mean"]
    )
    assert frame.loc["gelu", "parent"] == "kernel_7"
    # One seed (gelu) or a parent without results (convnext_t -> failed layer_norm): no interval.
    assert frame.loc["gelu", "n_pairs"] == 1 and math.isnan(frame.loc["gelu", "delta_vs_parent_ci_low"])
    assert pd.isna(frame.loc["gelu", "resolved"])
    assert math.isnan(frame.loc["convnext_t", "delta_vs_parent"])
    assert math.isnan(frame.loc["resnet50", "delta_vs_parent"])
    # The made-up seeds differ by the same 0.2 at every step: every paired delta is exact.
    assert frame.loc["stage_ratio", "resolved"]
    line = summary_line(frame.reset_index())
    # 10 changes have a parent in the study with two shared seeds; all resolved, and 8 have
    # the paper's sign (the paper's depth conv and move-up steps lose accuracy; these gain).
    assert line == "10 of 10 changes resolved (95% paired t interval excludes 0); 8 of them with the paper's sign"


def test_only_the_study_steps_in_its_order_with_paper_numbers_where_they_exist(tmp_path: Path):
    """A 3-step study of its own: three rows, in its order; a defined step has no paper
    numbers; a reference model compares against the final step."""
    study = tmp_path / "mine"
    mine = derive_step(get_step("convnext_t"), "convnext_t_bn", {"norm": "batch"}, label="BN instead of LN")
    steps = [get_step("convnext_t"), mine, get_step("resnet50"), get_step("swin_t")]
    for k in range(3):
        make_record(study, get_step("convnext_t"), k, 80.0 + k)
        make_record(study, mine, k, 79.0 + k + 0.1 * k)
        make_record(study, get_step("resnet50"), k, 78.0 + k)
        make_record(study, get_step("swin_t"), k, 81.0 + k)
    make_record(study, get_step("kernel_7"), 0, 50.0, config_hash="other000")  # another config's record
    write_manifest(study, steps, [0, 1, 2])
    frame = write_tables(study).set_index("step")
    assert list(frame.index) == ["convnext_t", "convnext_t_bn", "resnet50", "swin_t"]
    assert frame.loc["convnext_t_bn", "parent"] == "convnext_t"
    assert frame.loc["convnext_t_bn", "delta_vs_parent"] == pytest.approx(-0.9)
    assert math.isnan(frame.loc["convnext_t_bn", "paper_top1"])
    assert math.isnan(frame.loc["convnext_t_bn", "paper_delta_vs_parent"])
    assert math.isnan(frame.loc["convnext_t", "delta_vs_parent"])  # its parent is not in the study
    assert frame.loc["swin_t", "reference"] and frame.loc["swin_t", "parent"] == "resnet50"
    assert frame.loc["swin_t", "paper_delta_vs_parent"] == pytest.approx(81.3 - 78.82)
    assert not frame["sweep"].any()
    text = (study / "results.md").read_text()
    assert "kernel_7" not in text and "1 record(s) of other configs" in text
    assert "not run" not in text


def test_corrupt_record_names_the_file(study: Path):
    (bad,) = (study / "runs").glob("gelu__seed0__*.json")
    bad.write_text('{"step": "gelu", "top1": 9')
    with pytest.raises(ValueError, match=bad.name) as info:
        load_records(study)
    message = str(info.value)
    assert "\n" not in message and "delete" in message and "re-run" in message


def test_markdown_has_one_line_per_step_and_the_summary_line(study: Path):
    frame = write_tables(study)
    text = (study / "results.md").read_text()
    data, table, reading = text.strip().split("\n\n")
    assert data == study_description(load_records(study)), "results.md opens with what the study trained on"
    assert f"\n\n{markdown_table(frame)}" in text
    lines = table.splitlines()
    assert len(lines) == 2 + len(STEPS)
    assert set(lines[1]) <= set("|-: ")
    assert all(line.startswith("|") and line.endswith("|") for line in lines)
    by_step = {line.split("|")[2].strip(): line for line in lines[2:]}
    assert "not run" in by_step[MISSING] and "failed" in by_step[FAILED]
    assert "(sweep)" in by_step["kernel_5"] and "(sweep)" not in by_step["kernel_7"]
    assert "✓" in by_step["stage_ratio"]
    assert reading == summary_line(frame) + "."


def test_figures_written_recreated_and_deterministic(study: Path, tmp_path: Path):
    plots = tmp_path / "plots"
    names = ["roadmap.png", "roadmap.svg", "accuracy_vs_gmacs.png", "accuracy_vs_throughput.png", "curves.png"]
    written = draw_figures(study, plots)
    assert sorted(p.name for p in written) == sorted(names)
    assert all((plots / n).stat().st_size > 1000 for n in names)
    first = {n: (plots / n).read_bytes() for n in names}
    shutil.rmtree(plots)
    draw_figures(study, plots)
    assert {n: (plots / n).read_bytes() for n in names} == first, "the same records draw the same bytes"
    assert not list(plots.glob(".*")), "temporary files are cleaned up"


def test_figures_without_any_finished_run(tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    write_manifest(empty, STEPS[:3], [0])
    written = draw_figures(empty, tmp_path / "plots")
    assert [p.name for p in written] == ["roadmap.png", "roadmap.svg"]
    frame = write_tables(empty)
    assert set(frame["status"]) == {"missing"} and len(frame) == 3


def test_the_description_line_counts_epochs_in_words():
    from helpers import record

    from convnext_roadmap.report.figures.style import study_description

    one = {
        "study": "s",
        "dataset": "d",
        "resolution": 32,
        "epochs": 1,
        "width_mult": 0.25,
        "preset": "cpu",
        "seed": 0,
        "precision": "bf16-mixed",
    }
    assert "32 px, 1 epoch, width" in study_description([record(**one)])
    assert "32 px, 2 epochs, width" in study_description([record(**{**one, "epochs": 2})])
