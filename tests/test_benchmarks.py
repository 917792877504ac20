"""benchmarks/throughput.py runs end to end and writes well-formed CSVs. No assertion on
speed: a benchmark's numbers belong to its machine, not to the test suite."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "throughput.py"
sys.path.insert(0, str(SCRIPT.parent))

from throughput import COLUMNS  # noqa: E402

from convnext_roadmap.config.schema import TrainConfig  # noqa: E402
from convnext_roadmap.data.in_memory import BatchAugment  # noqa: E402


@pytest.mark.slow
def test_throughput_script_tiny_run(tmp_path):
    out = tmp_path / "tp.csv"
    # One thread: a busy 2-core machine slows OpenMP with 2 threads several times over.
    cmd = [
        sys.executable,
        str(SCRIPT),
        "--steps",
        "0,15",
        "--settings",
        "a",
        "--iters",
        "1",
        "--warmup",
        "0",
        "--batch-a",
        "8",
        "--formats",
        "channels_last",
        "--dtypes",
        "fp32",
        "--peak-size",
        "256",
        "--peak-reps",
        "2",
        "--threads",
        "1",
        "--out",
        str(out),
        "--pair-rounds-a",
        "2",
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "ours vs torchvision" in run.stdout and "naive path" in run.stdout

    df = pd.read_csv(out)
    assert list(df.columns) == COLUMNS
    # steps 0 and 15 at width 0.25, the same at width 1, torchvision's two models
    assert len(df) == 6
    assert set(df["model"]) == {"resnet50", "convnext_t", "torchvision.resnet50", "torchvision.convnext_tiny"}
    assert sorted(df["step_index"].dropna().astype(int)) == [0, 0, 15, 15]
    numeric = [
        "train_img_s",
        "eval_img_s",
        "gmacs_per_img",
        "train_gflops",
        "eval_gflops",
        "train_peak_frac",
        "eval_peak_frac",
    ]
    assert (df[numeric] > 0).all().all()
    assert (df["setting"] == "a").all() and (df["memory_format"] == "channels_last").all()

    # each of our endpoints at width 1 timed in alternation with its torchvision twin
    pairs = pd.read_csv(tmp_path / "tp_vs_torchvision.csv")
    assert list(zip(pairs["ours"], pairs["torchvision"], strict=True)) == [
        ("resnet50", "resnet50"),
        ("convnext_t", "convnext_tiny"),
    ]
    for mode in ("train", "eval"):
        assert (pairs[[f"{mode}_ours_img_s", f"{mode}_tv_img_s", f"{mode}_ratio_median"]] > 0).all().all()
        assert (pairs[f"{mode}_ratio_q1"] <= pairs[f"{mode}_ratio_q3"]).all()
    assert (pairs["rounds"] == 2).all()

    naive = pd.read_csv(tmp_path / "tp_naive.csv")
    assert list(naive["step_index"]) == [0, 15]
    assert (naive[["naive_img_s", "ours_img_s", "speedup", "naive_loader_img_s", "ours_batches_img_s"]] > 0).all().all()


def test_batch_augment_matches_per_sample_slicing():
    """The runner's batched crop + flip (convnext_roadmap.data.in_memory.BatchAugment) equals cropping each sample
    by plain slicing with the same random draws."""
    torch.manual_seed(0)
    x = torch.randint(0, 256, (64, 3, 12, 10), dtype=torch.uint8)
    out = BatchAugment(TrainConfig(crop_padding=4, hflip=True))(x, torch.Generator().manual_seed(1))

    gen = torch.Generator().manual_seed(1)  # replay the draws in BatchAugment's order
    top = torch.randint(0, 9, (64,), generator=gen).tolist()
    left = torch.randint(0, 9, (64,), generator=gen).tolist()
    flip = (torch.rand(64, generator=gen) < 0.5).tolist()
    padded = F.pad(x, (4, 4, 4, 4))
    for i in range(64):
        crop = padded[i, :, top[i] : top[i] + 12, left[i] : left[i] + 10]
        assert torch.equal(out[i], crop.flip(-1) if flip[i] else crop)
    assert 0 < sum(flip) < 64 and len(set(top)) > 1


def run_script(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / name), *args], capture_output=True, text=True, timeout=300, cwd=cwd
    )


@pytest.mark.slow
def test_rounding_sensitivity_runs_four_variants_on_the_same_data(tmp_path):
    out = tmp_path / "rounding.csv"
    run = run_script(
        "rounding_sensitivity.py",
        "--preset",
        "smoke",
        "--step",
        "kernel_7",
        "--precision",
        "32-true",
        "--out",
        str(out),
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    df = pd.read_csv(out).set_index("variant")
    assert list(df.index) == ["fast", "repeat", "plain", "nudged"]
    # a second identical run is bit-identical: any drift of the others is theirs
    for variant in ("fast", "repeat"):
        assert df.loc[variant, "final_weight_rel_diff"] == 0 and df.loc[variant, "top1_minus_fast"] == 0
        assert df.loc[variant, "max_loss_diff_first_10"] == 0
    # the same function with other rounding: the first loss (before any update) agrees to rounding
    assert (df["first_loss_diff"] < 1e-4).all()
    assert (df["batches"] == 4).all()


@pytest.mark.slow
def test_study_overhead_profiles_a_whole_study_end_to_end(tmp_path):
    out = tmp_path / "overhead.csv"
    run = run_script("study_overhead.py", "--preset", "smoke", "--steps", "0,5,15", "--out", str(out), cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "framework + data overhead" in run.stdout
    df = pd.read_csv(out)
    runs, total = df[df["step"] != "TOTAL"], df[df["step"] == "TOTAL"].iloc[0]
    assert len(runs) == 3 and (runs["model_s"] > 0).all() and (runs["data_s"] >= 0).all()
    # the three parts make up each run's wall time; the study's includes time outside the runs
    assert ((runs["model_s"] + runs["data_s"] + runs["framework_s"]) - runs["wall_s"]).abs().max() < 1e-6
    assert (runs["framework_s"] > 0).all()  # the parts measured inside a run never exceed its wall time
    assert total["wall_s"] > runs["wall_s"].sum() and total["model_s"] == pytest.approx(runs["model_s"].sum())
