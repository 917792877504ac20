#!/usr/bin/env python3
"""Where does the default study's wall time go? Model compute vs data and framework.

Runs the study end to end as a user does (`runner.py --steps all`, a subprocess, into a
fresh folder) with `--profile`, which has Lightning's SimpleProfiler time every run from
the inside: model compute (optimizer_step = forward, loss, backward, AdamW; and
validation_step), data (fetching and augmenting batches), and the rest of each run
(framework hooks, metrics, logging, checkpoints, model building, multiply-add counts,
writing the record). Time outside the runs (start-up, imports, tables and figures) is the
end-to-end wall time minus the runs' and counts as overhead too.

Why measured inside the run: timing the model in isolation afterwards and extrapolating
is at the mercy of this shared machine's drift (+-20% over minutes); it once gave a
negative overhead.

    python benchmarks/study_overhead.py                    # the default study, ~14 min on 2 cores
    python benchmarks/study_overhead.py --seeds 1          # one seed per step, half the time
    python benchmarks/study_overhead.py --study-dir DIR --study-wall-s 840   # summarise a profiled study
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def run_study(out: Path, extra: list[str]) -> float:
    """Train the study into `out` with --profile; its end-to-end wall time in seconds."""
    command = [
        sys.executable,
        str(ROOT / "runner.py"),
        "--steps",
        "all",
        "--profile",
        "--out",
        str(out / "results"),
        "--plots",
        str(out / "plots"),
        *extra,
    ]
    print("$", " ".join(command), flush=True)
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT)
    return time.perf_counter() - started


def split_table(study_dir: Path) -> pd.DataFrame:
    rows = []
    for path in sorted((study_dir / "runs").glob("*.json")):
        record = json.loads(path.read_text())
        if "time_split" not in record:
            raise SystemExit(f"error: {path} has no time_split; train the study with runner.py --profile")
        rows.append(
            {
                "step_index": record["step_index"],
                "step": record["step"],
                "seed": record["seed"],
                "precision": record.get("precision"),
                "wall_s": record["wall_time_s"],
                **record["time_split"],
            }
        )
    if not rows:
        raise SystemExit(f"error: no run records in {study_dir / 'runs'}")
    table = pd.DataFrame(rows).sort_values(["step_index", "seed"])
    table["overhead_frac"] = (table["data_s"] + table["framework_s"]) / table["wall_s"]
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study-dir", type=Path, help="summarise this profiled study instead of training one")
    parser.add_argument("--study-wall-s", type=float, help="with --study-dir: its end-to-end wall time")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "study_overhead.csv")
    args, extra = parser.parse_known_args(argv)  # the rest goes to runner.py (e.g. --seeds 1)
    if args.study_dir:
        study_dir, wall = args.study_dir, args.study_wall_s
        table = split_table(study_dir)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            wall = run_study(Path(tmp), extra)
            studies = list((Path(tmp) / "results").glob("*/runs"))
            table = split_table(studies[0].parent)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    runs_wall = table["wall_s"].sum()
    wall = wall or runs_wall
    model, data = table["model_s"].sum(), table["data_s"].sum()
    framework_in_runs = table["framework_s"].sum()
    outside = wall - runs_wall
    overhead = wall - model
    print(
        f"\nstudy wall time {wall:.0f} s ({'end to end' if wall != runs_wall else 'sum of runs'}): "
        f"model compute {model:.0f} s ({100 * model / wall:.1f}%), data {data:.0f} s "
        f"({100 * data / wall:.1f}%), framework inside runs {framework_in_runs:.0f} s "
        f"({100 * framework_in_runs / wall:.1f}%), outside runs {outside:.0f} s ({100 * outside / wall:.1f}%)"
        f"\nframework + data overhead: {overhead:.0f} s = {100 * overhead / wall:.1f}% of the wall time"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    summary = pd.DataFrame(
        [
            {
                "step_index": None,
                "step": "TOTAL",
                "seed": None,
                "precision": None,
                "wall_s": wall,
                "model_s": model,
                "data_s": data,
                "framework_s": framework_in_runs + outside,
                "overhead_frac": overhead / wall,
            }
        ]
    )
    pd.concat([table, summary]).to_csv(args.out, index=False)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
