#!/usr/bin/env python3
"""Stale-lock takeover race: N processes meet a lock left by a dead process at the same
moment; at most one may win it.

Each trial writes a lock owned by a process that has exited, releases N forked processes
together (a barrier) into `run_lock`, and has every process keep what it got until all have
tried. A trial with two or more owners is a violation (two runners training one run); one
with none means the stale lock was never taken over.

    python benchmarks/lock_race.py [--trials 100] [--processes 4] [--module convnext_roadmap/store/locks.py]

--module may name any file defining run_lock(path) (e.g. an older roadmap/records.py, from
`git show <commit>:roadmap/records.py > /tmp/old_records.py`) to measure it.
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing as mp
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def load_run_lock(module_file: Path) -> Callable[[Path], Any]:
    spec = importlib.util.spec_from_file_location(f"lock_under_test_{abs(hash(str(module_file)))}", module_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.run_lock


def _contender(module_file: str, lock: str, start: Any, done: Any, results: Any) -> None:
    run_lock = load_run_lock(Path(module_file))
    start.wait()
    with run_lock(Path(lock)) as acquired:
        results.put(bool(acquired))
        done.wait()  # hold it until every contender has tried


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def race(module_file: Path, trials: int, processes: int) -> dict[str, int]:
    """Counts of trials by number of owners: {"0": ..., "1": ..., "2+": ...}."""
    context = mp.get_context("fork")
    counts = {"0": 0, "1": 0, "2+": 0}
    with tempfile.TemporaryDirectory() as tmp:
        for trial in range(trials):
            lock = Path(tmp) / f"run{trial}.lock"
            lock.write_text(f"{socket.gethostname()} {dead_pid()}")
            start, done, results = context.Barrier(processes), context.Barrier(processes), context.Queue()
            workers = [
                context.Process(target=_contender, args=(str(module_file), str(lock), start, done, results))
                for _ in range(processes)
            ]
            for worker in workers:
                worker.start()
            owners = sum(results.get(timeout=60) for _ in workers)
            for worker in workers:
                worker.join(timeout=60)
            counts["0" if owners == 0 else "1" if owners == 1 else "2+"] += 1
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--module", type=Path, default=ROOT / "convnext_roadmap" / "store" / "locks.py")
    args = parser.parse_args()
    counts = race(args.module, args.trials, args.processes)
    print(
        f"{args.module}: {args.processes} processes x {args.trials} trials on a dead process's lock: "
        f"one owner in {counts['1']}, two or more in {counts['2+']}, none in {counts['0']}"
    )
    return 0 if counts["2+"] == 0 and counts["0"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
