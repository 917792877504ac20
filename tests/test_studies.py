"""Studies of one's own: steps defined in YAML, per-step recipes, strict validation, the
shipped question studies, and --jobs (several runs at once on one study)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from cli import run_cli, run_main

from convnext_roadmap.config.define import study_steps
from convnext_roadmap.config.load import load_study
from convnext_roadmap.study.parallel import cpu_cores
from convnext_roadmap.study.plan import study_runs
from convnext_steps import get_step

ROOT = Path(__file__).resolve().parents[1]

QUESTION = """\
name: question
preset: smoke
steps: [convnext_t, convnext_t_bn, convnext_t_lr]
define:
  - slug: convnext_t_bn
    parent: convnext_t
    label: "ConvNeXt-T, BN instead of LN"
    change: {norm: batch}
  - slug: convnext_t_lr
    parent: convnext_t
    label: "ConvNeXt-T, lr 1e-3"
    change: {}
    train: {lr: 1e-3}
"""


def records_of(out: Path, study: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / study / "runs").glob("*.json"))]


@pytest.mark.slow
def test_a_defined_step_and_a_per_step_recipe_through_the_cli(tmp_path):
    config = tmp_path / "question.yaml"
    config.write_text(QUESTION)
    out, plots = tmp_path / "out", tmp_path / "plots"
    result = run_cli("--config", str(config), "--out", str(out), "--plots", str(plots), "--jobs", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    records = {r["step"]: r for r in records_of(out, "question")}
    assert set(records) == {"convnext_t", "convnext_t_bn", "convnext_t_lr"}
    assert records["convnext_t_lr"]["config"]["lr"] == 1e-3 and records["convnext_t"]["config"]["lr"] == 2e-3
    assert records["convnext_t_bn"]["config"]["lr"] == 2e-3
    assert len({r["config_hash"] for r in records.values()}) == 3, "two recipes never share a record"
    assert records["convnext_t_bn"]["params"] != records["convnext_t"]["params"]  # BN has no bias after it
    table = pd.read_csv(out / "question" / "results.csv").set_index("step")
    assert list(table.index) == ["convnext_t", "convnext_t_bn", "convnext_t_lr"], "the study's steps, its order"
    assert table.loc["convnext_t_bn", "parent"] == "convnext_t"
    assert table.loc["convnext_t_lr", "delta_vs_parent"] == pytest.approx(
        records["convnext_t_lr"]["top1"] - records["convnext_t"]["top1"]
    )
    assert pd.isna(table.loc["convnext_t_bn", "paper_top1"]) and table.loc["convnext_t", "paper_top1"] == 81.97
    assert (plots / "question" / "roadmap.png").stat().st_size > 1000
    # the recipe is part of the run: changing it is a new record, the others stay done
    config.write_text(QUESTION.replace("{lr: 1e-3}", "{lr: 5e-4}"))
    again = run_cli("--config", str(config), "--out", str(out), "--dry-run")
    assert "2 done, 1 todo" in again.stdout and "1 record(s) of other configs" in again.stdout


BAD_DEFINITIONS = [
    ("{slug: x, parent: convnext_t, change: {nrom: batch}}", ["unknown NetSpec field", "nrom", "norm"]),
    ("{slug: x, parent: convnext_t, change: {norm: group}}", ["NetSpec.norm", "'batch'", "'layer'"]),
    ("{slug: x, parent: convnext_t, change: {kernel_size: 4}}", ["kernel_size", "odd"]),
    ("{slug: x, parent: convnext_t, change: {depthwise: sometimes}}", ["depthwise", "bool"]),
    ("{slug: x, parent: convnext_t, change: {}}", ["changes nothing", "train"]),
    ("{slug: x, parent: convnext_t, change: {norm: batch, kernel_size: 7}, train: {}}", []),  # fine: norm
    ("{slug: x, parent: no_such_step, change: {norm: batch}}", ["unknown parent", "no_such_step", "convnext_t"]),
    (
        "{slug: x, parent: y, change: {norm: batch}}\n  - {slug: y, parent: x, change: {norm: layer}}",
        ["cyclic", "x -> y"],
    ),
    ("{slug: convnext_t, parent: layer_norm, change: {norm: batch}}", ["built-in", "convnext_t"]),
    ("{slug: x, parent: convnext_t, change: {patch_size: 64}}", ["cannot be built"]),
    ("{slug: x, parent: convnext_t, change: {grn: true, block: bottleneck}}", ["grn"]),
    ("{slug: x, parent: convnext_t, change: {norm: batch}, train: {dataset: cifar10}}", ["dataset", "cannot differ"]),
    ("{slug: x, parent: convnext_t, change: {norm: batch}, train: {lr_typo: 1}}", ["lr_typo", "allowed"]),
    ("{slug: x, parent: convnext_t, change: {norm: batch}, colour: red}", ["colour", "allowed: slug"]),
    ("{slug: X Y, parent: convnext_t, change: {norm: batch}}", ["slug", "lower-case"]),
]


@pytest.mark.parametrize("definition,words", BAD_DEFINITIONS)
def test_every_invalid_definition_is_a_one_line_error_with_exit_2(tmp_path, definition, words, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text(f"name: bad\npreset: smoke\nsteps: all\ndefine:\n  - {definition}\n")
    args = ("--config", str(config), "--dry-run", "--out", str(tmp_path))
    # the first two as a subprocess (the exit code and stderr a user sees), the rest in-process
    # (the same main(), without ~4 s of imports each)
    first = [d for d, _ in BAD_DEFINITIONS[:2]]
    result = run_cli(*args) if definition in first else run_main(capsys, *args)
    if not words:
        assert result.returncode == 0, result.stderr
        return
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    for word in words:
        assert word in line, line


@pytest.mark.parametrize(
    "steps,slugs",
    [
        ("[0, 15]", ["resnet50", "convnext_t"]),
        ("15", ["convnext_t"]),
        ("'0-2,kernel_7'", ["resnet50", "stage_ratio", "patchify_stem", "kernel_7"]),
        ("[convnext_t, 0]", ["convnext_t", "resnet50"]),
    ],
)
def test_steps_as_a_list_an_int_or_a_string(tmp_path, steps, slugs):
    config = tmp_path / "s.yaml"
    config.write_text(f"name: s\npreset: smoke\nsteps: {steps}\n")
    study, _ = load_study("smoke", config)
    assert [s.slug for s in study_steps(study)] == slugs


def test_roadmap_key_and_readings_reach_every_step(tmp_path):
    config = tmp_path / "r.yaml"
    config.write_text(
        "name: r\npreset: smoke\nroadmap: resnet200\nsteps: [0, 15]\n"
        "readings: {layer_scale: every_step, conv_bias: authors, init: pytorch_default}\n"
    )
    study, _ = load_study("smoke", config)
    steps = study_steps(study)
    assert [s.slug for s in steps] == ["resnet200", "convnext_b"]
    assert all(s.spec.layer_scale_init == 1e-6 and s.spec.init == "pytorch_default" for s in steps)
    default = load_study("smoke", None, {"roadmap": "resnet200", "steps": [0, 15]})[0]
    assert {p.hash for p in study_runs(study)}.isdisjoint({p.hash for p in study_runs(default)}), (
        "a run's hash covers its reading"
    )
    config.write_text("name: r\npreset: smoke\nreadings: {layer_scale: sometimes}\n")
    result = run_cli("--config", str(config), "--dry-run", "--out", str(tmp_path))
    assert result.returncode == 2 and "last_step, every_step" in result.stderr


def test_a_default_valued_key_set_explicitly_is_the_same_run():
    """A run's hash holds what differs from the defaults: a new knob keeps old records."""
    plain = load_study("smoke")[0]
    explicit = load_study("smoke", None, {"train": {"mixup_alpha": 0.0, "optimizer": "adamw"}})[0]
    assert [p.hash for p in study_runs(plain)] == [p.hash for p in study_runs(explicit)]
    other = load_study("smoke", None, {"train": {"mixup_alpha": 0.2}})[0]
    assert [p.hash for p in study_runs(plain)] != [p.hash for p in study_runs(other)]


@pytest.mark.parametrize("name", ["leave_one_out", "micro_first", "small_images", "recipe_vs_architecture", "readings"])
@pytest.mark.slow
def test_shipped_question_studies_are_valid_and_plan(name, tmp_path):
    result = run_cli("--config", str(ROOT / "ablations" / f"{name}.yaml"), "--dry-run", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    study, preset = load_study("cpu", ROOT / "ablations" / f"{name}.yaml")
    assert preset == "cpu" and study.name == name and study.train.dataset == "fashion_mnist"


def test_leave_one_out_reverts_one_change_each_and_micro_first_ends_at_convnext_t():
    loo = study_steps(load_study("cpu", ROOT / "ablations" / "leave_one_out.yaml")[0])
    final = get_step("convnext_t")
    assert loo[0].slug == "convnext_t" and len(loo) == 14
    assert all(s.parent == "convnext_t" and len(s.changed_fields) == 1 for s in loo[1:])
    assert (
        len({next(iter(s.changed_fields)) + str(getattr(s.spec, next(iter(s.changed_fields)))) for s in loo[1:]}) == 13
    )
    micro = study_steps(load_study("cpu", ROOT / "ablations" / "micro_first.yaml")[0])
    assert micro[0].slug == "resnet50" and micro[-1].spec == final.spec
    assert [s.parent for s in micro[1:]] == [s.slug for s in micro[:-1]], "a chain, each step from the one before"
    recipe = study_steps(load_study("cpu", ROOT / "ablations" / "recipe_vs_architecture.yaml")[0])
    assert recipe[1].spec == recipe[3].spec == final.spec and recipe[2].train["optimizer"] == "sgd"


@pytest.mark.skipif(cpu_cores() < 2, reason="needs 2 cores")
@pytest.mark.slow
def test_jobs_2_trains_the_same_runs_as_jobs_1_and_auto_gives_a_lone_run_the_same_numbers(tmp_path):
    """--jobs 2 (two single-thread runners) against --jobs 1 on one thread: the same runs, one
    record each, no duplicates, the same numbers. Then one of those runs alone with the
    default --jobs auto and no thread setting: still one thread, so the same bits (before: a lone
    run took both cores, and its numbers differed from the same run trained beside another, or
    from one resumed after the others were done)."""
    common = ("--preset", "smoke", "--steps", "0-2", "--seeds", "2")
    two = run_cli(*common, "--jobs", "2", "--out", str(tmp_path / "two"), "--plots", str(tmp_path / "p2"))
    assert two.returncode == 0, two.stderr[-3000:]
    assert "2 jobs at once, 1 thread(s) each" in two.stdout
    records = records_of(tmp_path / "two", "smoke")
    runs = [(r["step"], r["seed"]) for r in records]
    assert len(runs) == len(set(runs)) == 6, "one record per run"
    assert all(r["threads"] == 1 for r in records)
    assert two.stdout.count("  done:") == 6
    assert pd.read_csv(tmp_path / "two" / "smoke" / "results.csv")["n_seeds"].tolist() == [2, 2, 2]
    one = run_cli(
        *common,
        "--jobs",
        "1",
        "--out",
        str(tmp_path / "one"),
        "--plots",
        str(tmp_path / "p1"),
        env={"OMP_NUM_THREADS": "1"},
    )
    assert one.returncode == 0, one.stderr[-3000:]
    numbers = {
        name: {
            (r["step"], r["seed"]): (r["top1"], r["val_loss"], r["config_hash"])
            for r in records_of(tmp_path / name, "smoke")
        }
        for name in ("two", "one")
    }
    assert numbers["two"] == numbers["one"], "--jobs 1 on one thread: the same runs, the same numbers"
    alone = subprocess.run(
        [
            sys.executable,
            str(ROOT / "runner.py"),
            "--preset",
            "smoke",
            "--steps",
            "1",
            "--seeds",
            "1",
            "--out",
            str(tmp_path / "alone"),
            "--no-report",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"},
    )
    assert alone.returncode == 0, alone.stderr[-3000:]
    (lone,) = records_of(tmp_path / "alone", "smoke")
    (same,) = [r for r in records if (r["step"], r["seed"]) == ("stage_ratio", 0)]
    assert lone["threads"] == 1
    assert (lone["top1"], lone["val_loss"], lone["config_hash"]) == (
        same["top1"],
        same["val_loss"],
        same["config_hash"],
    )


@pytest.mark.slow
def test_dry_run_says_how_many_seeds_resolve_a_delta(tmp_path):
    common = (
        "--preset",
        "smoke",
        "--steps",
        "0,1",
        "--seeds",
        "3",
        "--out",
        str(tmp_path),
        "--plots",
        str(tmp_path / "p"),
    )
    assert run_cli(*common, "--jobs", "1").returncode == 0
    result = run_cli(*common, "--dry-run", "--resolve", "0.5", "2")
    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("seed guidance")]
    assert "a Δ of 0.5 point(s) needs" in line and "a Δ of 2 point(s) needs" in line


def test_explicit_jobs_keep_their_thread_share_when_one_run_is_left():
    """`--jobs 2` resumed with one run to do: one job, but on the share of the cores `--jobs 2`
    gave every run (before: every core, so other bits than the runs trained beside it)."""
    from convnext_roadmap.study.parallel import resolve_jobs

    share = max(1, cpu_cores() // 2)
    assert resolve_jobs("2", None, [], runs_todo=1, on_gpu=False, world_size=1) == (1, share)
    assert resolve_jobs("2", None, [], runs_todo=5, on_gpu=False, world_size=1) == (2, share)
    assert resolve_jobs("1", None, [], runs_todo=5, on_gpu=False, world_size=1) == (1, None)
