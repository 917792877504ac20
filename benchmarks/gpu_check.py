#!/usr/bin/env python3
"""A five-minute check of the GPU path, for whoever has a GPU (none was available where this
project was written: docs/gpu.md lists what was tested on the CPU and what this checks).

Checks, each with a verdict (PASS, FAIL, SKIP) printed and written as one row of one CSV:

1. `precision`: what `precision: auto` resolves to on this GPU (bf16-mixed from compute
   capability 8.0, else 16-mixed) and whether torch agrees the GPU has bf16 in hardware;
2. `smoke_1gpu`: the smoke study (steps 0 and 15) on 1 GPU with bf16-mixed, channels_last and
   torch.compile: both runs done, recorded as compiled, on this GPU, with finite numbers;
3. `ddp_2gpu`: the same study under DDP on 2 GPUs, if there are two (a hang is a FAIL at the
   timeout): both runs done with world_size 2;
4. `throughput_224`: training img/s (forward, backward, fused AdamW; bf16 autocast,
   channels_last, 1000 classes, 224 px) of our steps 0 and 15 at width 1 against torchvision's
   resnet50 and convnext_tiny, timed in alternation; PASS where ours reach 0.9 of theirs.

    python benchmarks/gpu_check.py                 # every check (about five minutes)
    python benchmarks/gpu_check.py --dry-run       # what it would do, on any machine
    python benchmarks/gpu_check.py --out gpu_check.csv --batch 64
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_CSV = ROOT / "benchmarks" / "results" / "gpu_check.csv"
RATIO_PASS = 0.9  # ours vs torchvision's twin
STUDY_SETTINGS = [
    "--set",
    "train.accelerator=gpu",
    "--set",
    "train.precision=bf16-mixed",
    "--set",
    "train.channels_last=true",
    "--set",
    "train.compile=true",
]


def smoke_command(out: Path, devices: int) -> list[str]:
    command = [
        sys.executable,
        str(ROOT / "runner.py"),
        "--preset",
        "smoke",
        "--steps",
        "0,15",
        "--set",
        f"name=gpu_check_{devices}gpu",
        "--devices",
        str(devices),
        "--out",
        str(out / "results"),
        "--plots",
        str(out / "plots"),
        "--no-report",
        *STUDY_SETTINGS,
    ]
    return command + (["--strategy", "ddp"] if devices > 1 else [])


def run_study(out: Path, devices: int, timeout: float) -> dict[str, Any]:
    """The smoke study on `devices` GPUs, and what its records say."""
    command = smoke_command(out, devices)
    started = time.time()
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {
            "status": "FAIL",
            "seconds": time.time() - started,
            "detail": f"no end after {timeout:.0f} s: a hang (a collective one rank never reached?)",
        }
    seconds = time.time() - started
    runs = out / "results" / f"gpu_check_{devices}gpu" / "runs"
    records = [json.loads(p.read_text()) for p in sorted(runs.glob("*.json"))] if runs.is_dir() else []
    problems = []
    if result.returncode != 0:
        problems.append(f"exit {result.returncode}: {result.stderr.strip().splitlines()[-1:]}")
    if len(records) != 2:
        problems.append(f"{len(records)} record(s), not 2")
    for record in records:
        name = record["step"]
        if record["status"] != "done":
            problems.append(f"{name} {record['status']}: {record.get('failure')}")
            continue
        if record.get("world_size") != devices:
            problems.append(f"{name} world_size {record.get('world_size')}")
        if record.get("precision") != "bf16-mixed":
            problems.append(f"{name} precision {record.get('precision')}")
        if record.get("compiled") is not True:
            problems.append(f"{name} compiled={record.get('compiled')} ({record.get('compiled_graphs')} graphs)")
        if str(record.get("device", "")).startswith("cpu"):
            problems.append(f"{name} trained on {record['device']}")
    throughput = {r["step"]: round(r["train_throughput"] or 0.0) for r in records if r["status"] == "done"}
    return {
        "status": "FAIL" if problems else "PASS",
        "seconds": seconds,
        "detail": "; ".join(problems) if problems else f"2 runs done, compiled, bf16; train img/s {throughput}",
    }


def check_precision() -> dict[str, Any]:
    import torch

    from convnext_roadmap.train.precision import resolve_precision

    major, minor = torch.cuda.get_device_capability()
    chosen = resolve_precision("auto", "gpu")
    expected = "bf16-mixed" if major >= 8 else "16-mixed"
    return {
        "status": "PASS" if chosen == expected else "FAIL",
        "seconds": 0.0,
        "detail": f"{torch.cuda.get_device_name()} (capability {major}.{minor}): auto -> {chosen}, "
        f"torch bf16 in hardware: {torch.cuda.is_bf16_supported(including_emulation=False)}",
    }


def training_seconds(models: dict[str, Any], batch: int, rounds: int) -> dict[str, float]:
    """Median seconds of one training step of each model, the models timed in alternation."""
    import torch
    import torch.nn.functional as F

    x = torch.randn(batch, 3, 224, 224, device="cuda").contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device="cuda")
    steps = {}
    for name, model in models.items():
        model.cuda().to(memory_format=torch.channels_last).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)

        def step(model=model, optimizer=optimizer) -> None:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        steps[name] = step
    times: dict[str, list[float]] = {name: [] for name in steps}
    for round_index in range(rounds + 3):  # 3 warm-up rounds (cuDNN autotuning included)
        for name, step in steps.items():
            torch.cuda.synchronize()
            started = time.perf_counter()
            for _ in range(5):
                step()
            torch.cuda.synchronize()
            if round_index >= 3:
                times[name].append((time.perf_counter() - started) / 5)
    return {name: statistics.median(values) for name, values in times.items()}


def check_throughput(batch: int, rounds: int) -> dict[str, Any]:
    import torch
    import torchvision

    from convnext_steps import build_model, get_step

    torch.backends.cudnn.benchmark = True
    pairs = {"resnet50": (0, torchvision.models.resnet50), "convnext_t": (15, torchvision.models.convnext_tiny)}
    rows, problems = {}, []
    for name, (index, twin) in pairs.items():
        torch.manual_seed(0)
        models = {
            "ours": build_model(get_step(index), num_classes=1000, in_chans=3, width_mult=1.0),
            "torchvision": twin(num_classes=1000),
        }
        seconds = training_seconds(models, batch, rounds)
        ratio = seconds["torchvision"] / seconds["ours"]
        rows[name] = {
            "ours_img_s": batch / seconds["ours"],
            "torchvision_img_s": batch / seconds["torchvision"],
            "ratio": ratio,
        }
        if ratio < RATIO_PASS:
            problems.append(f"{name} {ratio:.2f}x torchvision's")
        del models
        torch.cuda.empty_cache()
    detail = "; ".join(
        f"{n}: ours {r['ours_img_s']:.0f} img/s, torchvision {r['torchvision_img_s']:.0f} ({r['ratio']:.2f}x)"
        for n, r in rows.items()
    )
    return {"status": "FAIL" if problems else "PASS", "seconds": 0.0, "detail": detail, "numbers": rows}


def plan(args: argparse.Namespace, gpus: int, out: Path) -> list[tuple[str, str]]:
    """(check, what it does) of every check, as this machine would run them."""
    steps = [("precision", "resolve precision auto on GPU 0 and compare with its compute capability")]
    steps.append(("smoke_1gpu", " ".join(smoke_command(out, 1))))
    steps.append(
        (
            "ddp_2gpu",
            (
                " ".join(smoke_command(out, 2))
                if gpus >= 2
                else f"SKIP here ({gpus} GPU); with 2: {' '.join(smoke_command(out, 2))}"
            ),
        )
    )
    steps.append(
        (
            "throughput_224",
            f"train steps 0 and 15 (width 1) and torchvision's resnet50/convnext_tiny at "
            f"224 px, batch {args.batch}, bf16, channels_last, {args.rounds} rounds "
            f"in alternation; PASS at >= {RATIO_PASS} of torchvision",
        )
    )
    return steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="print what would run, run nothing")
    parser.add_argument("--out", type=Path, default=DEFAULT_CSV, help=f"the CSV (default {DEFAULT_CSV})")
    parser.add_argument("--batch", type=int, default=64, help="batch of the throughput check (default 64)")
    parser.add_argument("--rounds", type=int, default=10, help="timed rounds of the throughput check")
    parser.add_argument("--timeout", type=float, default=600, help="seconds before a study counts as hung")
    args = parser.parse_args(argv)
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if args.dry_run:
        work = Path(tempfile.gettempdir()) / "gpu_check_XXXX"  # made by a real run only
        device = (
            f"{gpus} CUDA device(s): {torch.cuda.get_device_name()}"
            if gpus
            else "no CUDA device here: on a GPU machine it would run"
        )
        print(f"gpu_check --dry-run: {device}; torch {torch.__version__} (CUDA {torch.version.cuda})")
        for name, what in plan(args, gpus, work):
            print(f"  {name:15s} {what}")
        print(f"  CSV: {args.out} (check, status, seconds, detail)")
        return 0
    if not gpus:
        from convnext_roadmap.train.gpu import cuda_problem

        print(
            f"error: no usable CUDA device ({cuda_problem() or 'none on this machine'}); "
            "--dry-run shows what would run",
            file=sys.stderr,
        )
        return 2
    work = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    results: list[dict[str, Any]] = []

    def record(check: str, result: dict[str, Any]) -> None:
        results.append({"check": check, **{k: result[k] for k in ("status", "seconds", "detail")}})
        print(f"{result['status']:4s}  {check:15s} {result['detail']}", flush=True)

    record("precision", check_precision())
    record("smoke_1gpu", run_study(work / "one", 1, args.timeout))
    if gpus >= 2:
        record("ddp_2gpu", run_study(work / "two", 2, args.timeout))
    else:
        record("ddp_2gpu", {"status": "SKIP", "seconds": 0.0, "detail": f"{gpus} GPU, 2 needed"})
    started = time.time()
    result = check_throughput(args.batch, args.rounds)
    result["seconds"] = time.time() - started
    record("throughput_224", result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["check", "status", "seconds", "detail"])
        writer.writeheader()
        writer.writerows({**row, "seconds": f"{row['seconds']:.1f}"} for row in results)
    failed = [row["check"] for row in results if row["status"] == "FAIL"]
    print(f"wrote {args.out}; {'FAILED: ' + ', '.join(failed) if failed else 'every check passed or was skipped'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
