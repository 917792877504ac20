#!/usr/bin/env python3
"""Split a finished study's wall time into model compute and everything else.

For every run record of a study (default: results/cpu), time the model's own work alone -
forward + backward + AdamW step on a ready batch, and evaluation forward passes - with the
same step, width, resolution, batch and memory format, extrapolate it to the run's number
of batches, and compare with the run's recorded wall time. The rest is the framework
(Lightning, logging, checkpoints, metrics), data preparation and model building. With
--study-wall-s (the study's end-to-end time, e.g. from `time python runner.py --steps all`)
the time outside the runs (start-up, tables, figures) counts as overhead too.

Per run the split is noisy: this machine's speed drifts by up to +-20% between the study and
this measurement, so a run can show a negative overhead. Read the study's total.

    python benchmarks/study_overhead.py [--study-dir results/cpu] [--iters 20] [--study-wall-s 1284]
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import nullcontext
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from roadmap.config import TrainConfig  # noqa: E402
from roadmap.training import RoadmapClassifier  # noqa: E402
from throughput import median_seconds  # noqa: E402


def compute_seconds(record: dict, iters: int) -> dict[str, float]:
    cfg = TrainConfig(**record["config"])
    in_chans = 1 if record["dataset"] == "fashion_mnist" else 3
    module = RoadmapClassifier(record["step"], cfg, num_classes=10, in_chans=in_chans)
    model = module.model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    x = torch.randn(cfg.batch_size, in_chans, cfg.resolution, cfg.resolution).to(memory_format=fmt)
    y = torch.randint(0, 10, (cfg.batch_size,))
    # as Lightning's bf16-mixed: forward and loss under autocast, in training and evaluation
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if str(record.get("precision")).startswith("bf16")
                else nullcontext())

    def train_step() -> None:
        with autocast:
            loss = F.cross_entropy(model(x), y, label_smoothing=cfg.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    model.train()
    train_batch = median_seconds(train_step, 3, iters)
    val_batch_size = max(cfg.batch_size, 256)
    xv = torch.randn(val_batch_size, in_chans, cfg.resolution, cfg.resolution).to(memory_format=fmt)
    model.eval()
    with torch.inference_mode():
        with autocast:
            eval_batch = median_seconds(lambda: model(xv), 2, max(iters // 2, 3))
    train_batches = record["train_images"] // cfg.batch_size * cfg.epochs
    val_batches = -(-record["val_images"] // val_batch_size) * cfg.val_checks_per_epoch * cfg.epochs
    return {"train_compute_s": train_batch * train_batches, "eval_compute_s": eval_batch * val_batches}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study-dir", type=Path, default=ROOT / "results" / "cpu")
    parser.add_argument("--iters", type=int, default=20, help="timed training iterations per step")
    parser.add_argument("--study-wall-s", type=float, default=None,
                        help="the study's end-to-end wall time in seconds (default: the sum of its runs)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "study_overhead.csv")
    args = parser.parse_args(argv)
    records = sorted((json.loads(p.read_text()) for p in (args.study_dir / "runs").glob("*.json")),
                     key=lambda r: (r["step_index"], r["seed"]))
    records = [r for r in records if r["status"] == "done"]
    if not records:
        print(f"error: no finished runs in {args.study_dir / 'runs'}; run the study first", file=sys.stderr)
        return 2
    rows = []
    for record in records:
        split = compute_seconds(record, args.iters)
        compute = split["train_compute_s"] + split["eval_compute_s"]
        rows.append({"step": record["step"], "seed": record["seed"], "wall_s": record["wall_time_s"], **split,
                     "overhead_s": record["wall_time_s"] - compute,
                     "overhead_frac": 1 - compute / record["wall_time_s"]})
        print(f"{record['step']:20s} wall {record['wall_time_s']:6.1f}s  compute {compute:6.1f}s  "
              f"overhead {100 * rows[-1]['overhead_frac']:5.1f}%", flush=True)
    table = pd.DataFrame(rows)
    runs_wall = table["wall_s"].sum()
    compute = runs_wall - table["overhead_s"].sum()
    total_wall = args.study_wall_s or runs_wall
    where = "end to end" if args.study_wall_s else "sum of runs"
    print(f"\nstudy: wall {total_wall:.0f}s ({where}; runs {runs_wall:.0f}s), model compute {compute:.0f}s, "
          f"framework + data overhead {total_wall - compute:.0f}s = {100 * (1 - compute / total_wall):.1f}%")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
