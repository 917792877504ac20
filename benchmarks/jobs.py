#!/usr/bin/env python3
"""Several runs at once or one run on every core? What `--jobs auto` rests on.

(a) Per model size: training images per second of one process with every core against as
    many single-thread processes at once (one per core), each training the same model on
    its own batch: ConvNeXt-T at the default study's size and larger, by the forward GMACs
    of one image. Where the concurrent single-thread processes win, `auto` runs one job
    per core (convnext_roadmap/study/parallel.py, SMALL_MODEL_GMACS).
(b) A study's wall time with `--jobs 1` and `--jobs auto`, back to back on the same machine
    (default: `--steps 0,8,15 --seeds 2` of the cpu preset; `--full` for the whole default
    study), each into a fresh results folder.

    python benchmarks/jobs.py                 # (a) and (b), ~15 min on 2 idle cores
    python benchmarks/jobs.py --skip-study    # (a) only
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from throughput import cpu_description, runner_dtype, train_fn  # noqa: E402

from convnext_roadmap.study.parallel import cpu_cores  # noqa: E402
from convnext_steps import build_model  # noqa: E402
from convnext_steps.complexity import count_macs  # noqa: E402
from convnext_steps.cpu_kernels import use_cpu_kernels  # noqa: E402

# (step, width, resolution, batch): the default study's ConvNeXt-T, then larger
SIZES = [
    ("convnext_t", 0.25, 32, 256),
    ("convnext_t", 1.0, 32, 128),
    ("convnext_t", 1.0, 64, 64),
    ("convnext_t", 1.0, 128, 32),
    ("resnet50", 0.25, 32, 256),
]


def _train(args: tuple) -> float:
    """Images per second of one process training `step` for `seconds` with `threads`."""
    step, width, resolution, batch, threads, seconds, start = args
    torch.set_num_threads(threads)
    model = use_cpu_kernels(build_model(step, num_classes=10, in_chans=1, width_mult=width))
    model = model.to(memory_format=torch.channels_last)
    x = torch.randn(batch, 1, resolution, resolution).to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    fn = train_fn(model, x, y, runner_dtype(), "fused")
    for _ in range(3):
        fn()
    while time.time() < start:  # concurrent processes start timing together
        time.sleep(0.01)
    images, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        fn()
        images += batch
    return images / (time.perf_counter() - began)


def per_size(seconds: float) -> pd.DataFrame:
    cores = cpu_cores()
    rows = []
    context = mp.get_context("spawn")
    for step, width, resolution, batch in SIZES:
        gmacs = count_macs(build_model(step, num_classes=10, in_chans=1, width_mult=width), resolution, 1) / 1e9
        with context.Pool(1) as pool:
            one = pool.map(_train, [(step, width, resolution, batch, cores, seconds, time.time() + 20)])[0]
        with context.Pool(cores) as pool:
            many = sum(pool.map(_train, [(step, width, resolution, batch, 1, seconds, time.time() + 20)] * cores))
        rows.append(
            {
                "step": step,
                "width": width,
                "resolution": resolution,
                "batch": batch,
                "forward_gmacs_per_image": round(gmacs, 4),
                "one_job_img_s": round(one),
                f"{cores}_jobs_img_s": round(many),
                "jobs_vs_one": round(many / one, 3),
            }
        )
        print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def same_as_committed(fresh: Path, committed: Path) -> tuple[int, int]:
    """(runs of `fresh` whose config hash has a committed record, how many of those have its top-1)."""
    kept = {}
    for f in committed.glob("*.json"):
        record = json.loads(f.read_text())
        kept[record["config_hash"]] = record["top1"]
    matched = same = 0
    for f in fresh.glob("*.json"):
        record = json.loads(f.read_text())
        if record["config_hash"] in kept:
            matched += 1
            same += record["top1"] is not None and record["top1"] == kept[record["config_hash"]]
    return matched, same


def study_wall(extra: list[str]) -> pd.DataFrame:
    rows = []
    for jobs in ("1", "auto"):
        with tempfile.TemporaryDirectory() as tmp:
            started = time.time()
            subprocess.run(
                [
                    sys.executable,
                    str(ROOT / "runner.py"),
                    *extra,
                    "--jobs",
                    jobs,
                    "--out",
                    f"{tmp}/r",
                    "--plots",
                    f"{tmp}/p",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            wall = round(time.time() - started, 1)
            # the committed default study was trained under auto (1 thread per run): the same
            # seeds there must give the same bits; --jobs 1 (every core) gives other bits
            matched, same = same_as_committed(Path(tmp) / "r" / "cpu" / "runs", ROOT / "results" / "cpu" / "runs")
            rows.append(
                {
                    "study": " ".join(extra),
                    "jobs": jobs,
                    "wall_s": wall,
                    "runs_with_a_committed_twin": matched,
                    "identical_top1": same,
                }
            )
            print(rows[-1], flush=True)
    frame = pd.DataFrame(rows)
    frame["speedup_vs_jobs_1"] = (frame["wall_s"].iloc[0] / frame["wall_s"]).round(3)
    return frame


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=12.0, help="timed seconds per measurement in (a)")
    parser.add_argument("--full", action="store_true", help="(b) on the whole default study")
    parser.add_argument("--skip-study", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {cpu_description()}, {cpu_cores()} cores, {runner_dtype()}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    per_size(args.seconds).to_csv(args.out / "jobs_per_size.csv", index=False)
    if not args.skip_study:
        extra = ["--steps", "all"] if args.full else ["--steps", "0,8,15", "--seeds", "2"]
        study_wall(extra).to_csv(args.out / "jobs_study_wall.csv", index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
