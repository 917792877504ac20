"""The study report: records -> results.csv / results.md / figures, on a synthetic study."""

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from convnext_steps import list_steps
from roadmap.report import (draw_figures, load_records, markdown_table, summarize,
                            t_quantile_975, welch_ci95, write_tables)

STEPS = list_steps()
FAILED = "layer_norm"     # both seeds failed
MISSING = "kernel_11"     # never run
PARTIAL = "gelu"          # seed 0 done, seed 1 failed
EPOCHS = 4

CSV_COLUMNS = [
    "step_index", "step", "label", "phase", "parent", "status", "n_seeds",
    "top1_mean", "top1_std", "top5_mean", "top5_std",
    "delta_top1_vs_parent", "delta_top1_vs_parent_ci95",
    "delta_top1_vs_resnet50", "delta_top1_vs_resnet50_ci95",
    "params_m", "gmacs_train_res", "gmacs_224", "train_throughput", "eval_throughput",
    "wall_time_s", "paper_top1", "paper_top1_std", "paper_gflops", "paper_delta_vs_parent",
]


def fake_top1(index: int, seed: int) -> float:
    """Made-up accuracies: a slow climb along the roadmap, +-0.1 between the two seeds."""
    return round(90.0 + 0.2 * index + (0.1 if seed == 0 else -0.1) + 0.03 * (index % 3), 4)


def _metrics_csv(path: Path, final_top1: float, rng: np.random.Generator) -> None:
    """A sparse Lightning-CSVLogger-like file: train rows, then two validations per epoch."""
    rows, step = [], 0
    for epoch in range(EPOCHS):
        for _ in range(3):
            rows.append({"epoch": epoch, "step": step, "train_loss": 1.5 / (epoch + 1)})
            step += 10
        for half in (1, 2):
            progress = (epoch + half / 2) / EPOCHS
            top1 = final_top1 - 12 * (1 - progress) ** 2 + rng.normal(0, 0.05)
            rows.append({"epoch": epoch, "step": step - 1, "val_top1": top1,
                         "val_top5": min(99.9, top1 + 6), "val_loss": 0.3 + (1 - progress)})
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=["epoch", "step", "train_loss", "val_loss", "val_top1",
                                "val_top5"]).to_csv(path, index=False)


def make_study(root: Path, seeds=(0, 1)) -> Path:
    """A study directory as the runner leaves it (records + metrics.csv), no training."""
    study = root / "synthetic"
    runs = study / "runs"
    runs.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for step in STEPS:
        if step.slug == MISSING:
            continue
        for seed in seeds:
            failed = step.slug == FAILED or (step.slug == PARTIAL and seed == 1)
            top1 = None if failed else fake_top1(step.index, seed)
            log_dir = f"logs/{step.slug}/seed{seed}"
            if not failed:
                _metrics_csv(study / log_dir / "metrics.csv", top1, rng)
            record = {
                "study": "synthetic", "step": step.slug, "step_index": step.index,
                "label": step.label, "phase": step.phase, "parent": step.parent, "seed": seed,
                "status": "failed" if failed else "done",
                "failure": "loss became NaN" if failed else None,
                "failed_epoch": 2 if failed else None,
                "top1": top1, "top5": None if failed else top1 + 6.0,
                "val_loss": None if failed else 0.3,
                "params": int(20e6 + step.index * 1e5),
                "gmacs_train_res": step.paper_gmacs * (64 / 224) ** 2,
                "gmacs_224": step.paper_gmacs, "train_throughput": 900.0 - 20 * step.index,
                "eval_throughput": 3000.0 - 50 * step.index, "wall_time_s": 100.0 + seed,
                "epochs": EPOCHS, "dataset": "fashion-mnist", "resolution": 64,
                "preset": "smoke", "width_mult": 0.25, "config_hash": "abc123",
                "git_commit": "0" * 40, "git_dirty": False, "versions": {"torch": "x"},
                "device": "cpu", "finished_at": "2024-01-01T00:00:00", "log_dir": log_dir,
            }
            (runs / f"{step.slug}__seed{seed}.json").write_text(json.dumps(record))
    return study


@pytest.fixture
def study(tmp_path: Path) -> Path:
    return make_study(tmp_path)


def test_t_quantiles_match_the_table():
    assert t_quantile_975(1) == pytest.approx(12.7062, abs=1e-3)
    assert t_quantile_975(2) == pytest.approx(4.3027, abs=1e-3)
    assert t_quantile_975(10) == pytest.approx(2.2281, abs=1e-3)
    assert t_quantile_975(30) == pytest.approx(2.0423, abs=1e-3)
    assert t_quantile_975(1e6) == pytest.approx(1.96, abs=1e-3)
    assert t_quantile_975(2) > t_quantile_975(2.5) > t_quantile_975(3)


def test_welch_interval_by_hand():
    # Equal n=2 and equal variances 0.02: Welch df = 2 exactly, se = sqrt(0.01 + 0.01).
    a, b = [80.0, 80.2], [79.0, 79.2]
    assert welch_ci95(a, b) == pytest.approx(4.302653 * math.sqrt(0.02), rel=1e-5)
    # Unequal case: va = 0.04/2 = 0.02, vb = 0.01/3; df from the Welch-Satterthwaite formula.
    a, b = [1.0, 1.2, 0.8, 1.0], [2.0, 2.1, 1.9]
    va, vb = np.var(a, ddof=1) / 4, np.var(b, ddof=1) / 3
    df = (va + vb) ** 2 / (va ** 2 / 3 + vb ** 2 / 2)
    assert 3 < df < 5
    expected = t_quantile_975(df) * math.sqrt(va + vb)
    assert welch_ci95(a, b) == pytest.approx(expected)
    lo, hi = t_quantile_975(math.ceil(df)), t_quantile_975(math.floor(df))
    assert lo * math.sqrt(va + vb) < welch_ci95(a, b) < hi * math.sqrt(va + vb)
    assert math.isnan(welch_ci95([1.0], [1.0, 2.0]))


def test_csv_schema_status_and_seed_counts(study: Path):
    frame = write_tables(study)
    csv = pd.read_csv(study / "results.csv")
    assert list(csv.columns) == CSV_COLUMNS
    assert list(frame.columns) == CSV_COLUMNS
    assert list(csv["step"]) == [s.slug for s in STEPS]
    status = dict(zip(csv["step"], csv["status"]))
    seeds = dict(zip(csv["step"], csv["n_seeds"]))
    assert status[FAILED] == "failed" and seeds[FAILED] == 0
    assert status[MISSING] == "missing" and seeds[MISSING] == 0
    assert status[PARTIAL] == "done" and seeds[PARTIAL] == 1
    assert all(seeds[s.slug] == 2 for s in STEPS if s.slug not in (FAILED, MISSING, PARTIAL))
    assert not list(study.glob(".*tmp*")), "temporary files are cleaned up"
    assert math.isnan(csv.set_index("step").loc[MISSING, "wall_time_s"])
    row = csv.set_index("step").loc[FAILED]
    assert math.isnan(row["top1_mean"]) and row["wall_time_s"] == pytest.approx(201.0)
    assert row["params_m"] == pytest.approx(20 + 14 * 0.1)


def test_deltas_and_intervals_on_known_numbers(study: Path):
    frame = summarize(load_records(study)).set_index("step")
    a = [fake_top1(2, 0), fake_top1(2, 1)]     # patchify_stem
    b = [fake_top1(1, 0), fake_top1(1, 1)]     # its parent, stage_ratio
    row = frame.loc["patchify_stem"]
    assert row["top1_mean"] == pytest.approx(np.mean(a))
    assert row["top1_std"] == pytest.approx(np.std(a, ddof=1))
    assert row["delta_top1_vs_parent"] == pytest.approx(np.mean(a) - np.mean(b))
    # By hand: n=2 each, equal variances -> Welch df = 2, t = 4.302653.
    se = math.sqrt(np.var(a, ddof=1) / 2 + np.var(b, ddof=1) / 2)
    assert row["delta_top1_vs_parent_ci95"] == pytest.approx(4.302653 * se, rel=1e-5)
    base = [fake_top1(0, 0), fake_top1(0, 1)]
    assert row["delta_top1_vs_resnet50"] == pytest.approx(np.mean(a) - np.mean(base))
    assert row["paper_delta_vs_parent"] == pytest.approx(79.51 - 79.36)
    assert row["paper_gflops"] == 4.42
    # Sweep branches compare against move_up_dwconv; the chain resumes from kernel_7.
    assert frame.loc["kernel_9", "delta_top1_vs_parent"] == pytest.approx(
        frame.loc["kernel_9", "top1_mean"] - frame.loc["move_up_dwconv", "top1_mean"])
    assert frame.loc["gelu", "delta_top1_vs_parent"] == pytest.approx(
        frame.loc["gelu", "top1_mean"] - frame.loc["kernel_7", "top1_mean"])
    # One seed (gelu) or a parent without results (fewer_norms -> failed layer_norm): no CI.
    assert math.isnan(frame.loc["gelu", "top1_std"])
    assert math.isnan(frame.loc["gelu", "delta_top1_vs_parent_ci95"])
    assert math.isnan(frame.loc["convnext_t", "delta_top1_vs_parent"])
    assert frame.loc["resnet50", "delta_top1_vs_resnet50"] == 0.0
    assert math.isnan(frame.loc["resnet50", "delta_top1_vs_parent"])


def test_selected_steps_plus_any_with_records(study: Path):
    frame = summarize(load_records(study), ["resnet50", "kernel_11"])
    assert "kernel_11" in set(frame["step"]) and "convnext_t" in set(frame["step"])
    assert len(summarize([], ["resnet50", "kernel_11"])) == 2
    with pytest.raises(ValueError, match="unknown"):
        summarize([], ["no_such_step"])


def test_corrupt_record_names_the_file(study: Path):
    bad = study / "runs" / "gelu__seed0.json"
    bad.write_text('{"step": "gelu", "top1": 9')
    with pytest.raises(ValueError, match=r"gelu__seed0\.json") as info:
        load_records(study)
    message = str(info.value)
    assert "\n" not in message and "delete" in message and "re-run" in message


def test_markdown_has_one_line_per_step(study: Path):
    frame = write_tables(study)
    text = (study / "results.md").read_text()
    assert text == markdown_table(frame)
    lines = text.strip().splitlines()
    assert len(lines) == 2 + len(STEPS)
    assert set(lines[1]) <= set("|-: ")
    assert all(line.startswith("|") and line.endswith("|") for line in lines)
    by_step = {line.split("|")[2].strip(): line for line in lines[2:]}
    assert "not run" in by_step[MISSING] and "failed" in by_step[FAILED]
    assert "(sweep)" in by_step["kernel_5"]


def test_figures_written_and_recreated(study: Path, tmp_path: Path):
    plots = tmp_path / "plots"
    names = ["roadmap.png", "roadmap.svg", "accuracy_vs_gmacs.png",
             "accuracy_vs_throughput.png", "curves.png"]
    written = draw_figures(study, plots, title="synthetic test study")
    assert sorted(p.name for p in written) == sorted(names)
    assert all((plots / n).stat().st_size > 1000 for n in names)
    shutil.rmtree(plots)
    draw_figures(study, plots)
    assert all((plots / n).stat().st_size > 1000 for n in names)
    assert not list(plots.glob(".*")), "temporary files are cleaned up"


def test_figures_without_any_finished_run(tmp_path: Path):
    empty = tmp_path / "empty"
    written = draw_figures(empty, tmp_path / "plots")
    assert [p.name for p in written] == ["roadmap.png", "roadmap.svg"]
    frame = write_tables(empty)
    assert set(frame["status"]) == {"missing"} and len(frame) == len(STEPS)
