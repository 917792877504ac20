"""Budgets as an axis of a study, runs reused across studies, and runs that did not learn."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from cli import assert_one_line_error, run_cli, run_main
from helpers import record
from scipy import stats

from convnext_roadmap.config.budget import fit_to_budget
from convnext_roadmap.config.load import load_study
from convnext_roadmap.report.budget import BUDGET_COLUMNS, delta_changes, spearman_interval
from convnext_roadmap.study.plan import study_runs


@pytest.mark.parametrize(
    "value,words",
    [
        ("[]", ["non-empty list"]),
        ("[0]", ["at least 1 epoch"]),
        ("[-2]", ["at least 1 epoch"]),
        ("[1, 3, 1]", ["1 given twice"]),
        ("3", ["non-empty list"]),
        ("[1.5]", ["fraction of an epoch"]),
        ("[abc]", ["not a number of epochs"]),
        ("{a: 1}", ["non-empty list"]),
    ],
)
def test_bad_budgets_are_one_line_errors(value, words, capsys, tmp_path):
    result = run_main(capsys, "--preset", "smoke", "--set", f"budgets={value}", "--dry-run", "--out", str(tmp_path))
    assert result.returncode == 2
    assert_one_line_error(result, "budgets", *words)


@pytest.mark.slow
def test_bad_budgets_on_the_command_line(tmp_path):
    result = run_cli("--preset", "smoke", "--budgets", "1,x", "--dry-run", "--out", str(tmp_path))
    assert result.returncode == 2
    assert_one_line_error(result, "--budgets", "whole numbers")
    result = run_cli("--preset", "smoke", "--budgets", "1,0.5", "--dry-run", "--out", str(tmp_path))
    assert result.returncode == 2
    assert_one_line_error(result, "fraction of an epoch")


def test_a_budget_fits_the_whole_schedule_and_the_recipes_own_keeps_its_hash():
    plain = load_study("cpu")[0]
    budgeted = load_study("cpu", None, {"budgets": [1, 3, 10]})[0]
    assert [p.hash for p in study_runs(plain)] == [p.hash for p in study_runs(budgeted) if p.budget == 1]
    ten = fit_to_budget(plain.train, 10)
    assert (ten.epochs, ten.warmup_epochs) == (10, 1.0), "warmup keeps its share of the run"
    assert ten.curve_val_images and ten.val_checks_per_epoch == 2
    assert fit_to_budget(plain.train, plain.train.epochs) is plain.train


def test_the_change_of_a_delta_is_paired_by_seed():
    """(child - parent at b) - (child - parent at the smallest b), per seed, against scipy."""
    child = {1: [80.0, 81.5, 79.0, 80.2], 3: [84.0, 84.2, 83.1, 85.0]}
    parent = {1: [79.0, 80.0, 79.5, 79.9], 3: [84.5, 85.1, 83.0, 85.6]}
    records = [
        record(step=slug, seed=s, budget_epochs=b, top1=values[b][s])
        for slug, values in (("child", child), ("parent", parent))
        for b in (1, 3)
        for s in range(4)
    ]
    steps = [{"slug": "parent", "parent": None}, {"slug": "child", "parent": "parent", "label": "c"}]
    row = delta_changes(records, steps).iloc[0]
    d = [(child[3][s] - parent[3][s]) - (child[1][s] - parent[1][s]) for s in range(4)]
    low, high = stats.ttest_1samp(d, 0.0).confidence_interval(0.95)
    assert row["delta_change"] == pytest.approx(sum(d) / 4)
    assert (row["delta_change_ci_low"], row["delta_change_ci_high"]) == pytest.approx((low, high))
    assert row["n_pairs"] == 4 and row["resolved"] == bool(low > 0 or high < 0)
    assert list(delta_changes(records, steps).columns) == BUDGET_COLUMNS


@pytest.mark.slow
def test_spearman_with_its_bootstrap_interval():
    measured, paper = [0.1, 0.5, -0.3, 1.2, 0.9, -1.0], [0.2, 0.4, -0.1, 1.0, 1.1, -0.5]
    rho, low, high = spearman_interval(pd.Series(measured).to_numpy(), pd.Series(paper).to_numpy())
    assert rho == pytest.approx(stats.spearmanr(measured, paper).statistic)
    assert low <= rho <= high and -1 <= low and high <= 1
    assert math.isnan(spearman_interval(pd.Series([1.0, 2.0]).to_numpy(), pd.Series([1.0, 2.0]).to_numpy())[0])


@pytest.mark.slow
def test_a_two_budget_smoke_study(tmp_path):
    out, plots = tmp_path / "r", tmp_path / "p"
    result = run_cli(
        "--preset",
        "smoke",
        "--steps",
        "0-2",
        "--seeds",
        "2",
        "--budgets",
        "1,2",
        "--out",
        str(out),
        "--plots",
        str(plots),
        "--set",
        "train.synthetic_val_size=300",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    study = out / "smoke"
    names = sorted(p.name.rsplit("__", 1)[0] for p in (study / "runs").glob("*.json"))
    assert names == sorted(
        f"{s}__seed{k}__{b}ep" for s in ("resnet50", "stage_ratio", "patchify_stem") for k in (0, 1) for b in (1, 2)
    )
    results = pd.read_csv(study / "results.csv")
    assert sorted(zip(results["budget_epochs"], results["step"], strict=True)) == sorted(
        (b, s) for b in (1, 2) for s in ("resnet50", "stage_ratio", "patchify_stem")
    )
    assert results.loc[results["step"] == "stage_ratio", "n_pairs"].tolist() == [2, 2], "paired at each budget"
    table = pd.read_csv(study / "budget.csv")
    assert list(table.columns) == BUDGET_COLUMNS
    changes = table[table["kind"] == "change"]
    assert sorted(changes["step"]) == ["patchify_stem", "stage_ratio"] and set(changes["budget_epochs"]) == {2}
    assert set(table.loc[table["kind"] == "agreement", "budget_epochs"]) == {1, 2}
    for name in ("budget.png", "roadmap_1ep.png", "roadmap_2ep.png", "curves_2ep.png"):
        assert (plots / "smoke" / name).is_file(), name
    manifest = json.loads((study / "study.json").read_text())
    assert manifest["budgets"] == [1, 2] and {r["budget_epochs"] for r in manifest["runs"]} == {1, 2}
    two = json.loads(next((study / "runs").glob("resnet50__seed0__2ep__*.json")).read_text())
    assert two["budget_epochs"] == 2 and two["epochs"] == 2 and two["config"]["curve_val_images"]
    assert "1/2 epochs" in (study / "results.md").read_text().splitlines()[0]


@pytest.mark.slow
def test_a_run_of_another_study_is_reused_not_retrained(tmp_path):
    """The same spec, recipe and seed under another step name: copied from the first study's
    record (numbers, log, weights), never trained again."""
    out, plots = tmp_path / "r", tmp_path / "p"
    first = run_cli("--preset", "smoke", "--steps", "patchify_stem", "--out", str(out), "--plots", str(plots))
    assert first.returncode == 0, first.stderr[-3000:]
    config = tmp_path / "mine.yaml"
    config.write_text(
        "name: mine\npreset: smoke\nsteps: [stage_ratio, my_stem]\n"
        "define:\n  - {slug: my_stem, parent: stage_ratio, change: {stem: patchify}}\n"
    )
    plan = run_cli("--config", str(config), "--dry-run", "--out", str(out))
    assert plan.returncode == 0, plan.stderr[-3000:]
    line = next(row for row in plan.stdout.splitlines() if "my_stem" in row)
    assert "reuse" in line and "smoke/runs/patchify_stem__seed0__" in line, plan.stdout
    second = run_cli("--config", str(config), "--out", str(out), "--plots", str(plots))
    assert second.returncode == 0, second.stderr[-3000:]
    assert "reused: my_stem__seed0 from smoke/runs/patchify_stem__seed0__" in second.stdout
    assert "1 run(s) trained" in second.stdout, "stage_ratio only"
    source = json.loads(next((out / "smoke" / "runs").glob("patchify_stem__*.json")).read_text())
    copy = json.loads(next((out / "mine" / "runs").glob("my_stem__*.json")).read_text())
    for key in ("top1", "top5", "val_loss", "params", "gmacs_train_res", "wall_time_s", "finished_at", "config"):
        assert copy[key] == source[key], key
    assert copy["study"] == "mine" and copy["step"] == "my_stem" and copy["config_hash"] != source["config_hash"]
    assert copy["reused_from"].startswith("smoke/runs/patchify_stem__seed0__")
    assert (out / "mine" / copy["log_dir"] / "metrics.csv").is_file(), "its curve travels with it"
    assert (out / "mine" / copy["weights"]).is_file()
    again = run_cli("--config", str(config), "--dry-run", "--out", str(out))
    assert "2 done" in again.stdout, "a reused record is a done run of its study"


@pytest.mark.slow
def test_a_run_at_chance_level_is_flagged(tmp_path):
    out, plots = tmp_path / "r", tmp_path / "p"
    result = run_cli(
        "--preset",
        "smoke",
        "--steps",
        "0",
        "--out",
        str(out),
        "--plots",
        str(plots),
        "--set",
        "train.lr=1e-9",
        "--set",
        "train.synthetic_val_size=5000",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "did not learn" in warnings[0] and "chance level for 10 classes" in warnings[0]
    assert "⚠ 1 did not learn" in (out / "smoke" / "results.md").read_text()
    assert pd.read_csv(out / "smoke" / "results.csv")["n_did_not_learn"].tolist() == [1]
    assert pd.read_csv(out / "smoke" / "runs.csv")["did_not_learn"].tolist() == [True]
