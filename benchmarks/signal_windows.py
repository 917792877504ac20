#!/usr/bin/env python3
"""Signal-window trials: SIGINT, SIGTERM and SIGUSR1 sent to the runner at precise moments
from start-up to its last record (tests/crash_driver.py), then the same command again.

A trial passes when the interrupted invocation exits 130 with one `interrupted (...): ...
run the same command again to resume` line and no traceback (or finishes with 0 when the
signal was honoured after its last record, then exits 130), leaves no record without its
numbers, and the rerun ends with records identical to an uninterrupted run's (top-1, top-5,
val_loss), none duplicated or missing.

    python benchmarks/signal_windows.py [--root REPO] [--out /tmp/signal_windows]

--root measures another checkout (e.g. `git archive <commit> | tar -x -C /tmp/old`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DRIVER = ROOT / "tests" / "crash_driver.py"
sys.path.insert(0, str(ROOT / "tests"))

from robust_helpers import records_by_run, tiny_study  # noqa: E402  (the tests' tiny study)

NUMBERS = ("top1", "top5", "val_loss")

FINAL = 32  # optimizer steps of a run: 16 batches x 2 epochs

# (name, crash_driver --at, what the moment is)
WINDOWS = [
    ("start-up", None, "0.5 s after the process starts (imports)"),
    ("planning", "plan", "while the study is planned"),
    ("mid-training", "batch:1:5", "after a training batch"),
    ("epoch-end checkpoint", "save-during:16", "while the end-of-epoch-0 checkpoint is written"),
    ("final checkpoint", f"save-during:{FINAL}", "while the first checkpoint of the finished run is written"),
    ("after final checkpoint", f"save-after:{FINAL}", "right after it"),
    ("fit end", "fit-end", "after training, before the record is assembled"),
    ("record write", "record-during", "while the record is written"),
    ("between runs", "record-after", "right after the first run's record"),
    ("tables", "tables", "while the tables are drawn"),
]
SIGNALS = ("SIGINT", "SIGTERM", "SIGUSR1")


def default_signals() -> None:
    """The child starts with the stop signals at their defaults, as under a terminal (a
    background job of a shell starts with SIGINT ignored, which a runner leaves ignored)."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_DFL)


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), **extra}


JOBS: list[str] = []  # ["--jobs", "1"] where the runner has --jobs: the windows are in one process


def runner_args(config: Path, out: Path) -> list[str]:
    return ["--config", str(config), "--out", str(out), "--plots", str(out / "plots"), *JOBS]


def records(out: Path) -> dict[str, list[dict]]:
    return records_by_run(out, "windows")


def interrupted_line(stderr: str) -> str | None:
    lines = [line for line in stderr.splitlines() if line.startswith("interrupted")]
    return lines[0] if len(lines) == 1 and "run the same command again" in lines[0] else None


def run_trial(
    root: Path,
    config: Path,
    out: Path,
    window: str | None,
    sig: str,
    reference: dict[str, dict],
    extra_env: dict[str, str] | None = None,
) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    fired_file = out.parent / f"{out.name}.fired"
    fired_file.unlink(missing_ok=True)
    if window is None:  # an external signal during start-up
        process = subprocess.Popen(
            [sys.executable, str(root / "runner.py"), *runner_args(config, out)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env(),
            preexec_fn=default_signals,
        )
        time.sleep(0.5)
        process.send_signal(getattr(signal, sig))
        _, stderr = process.communicate(timeout=900)
        code, fired = process.returncode, True
    else:
        first = subprocess.run(
            [
                sys.executable,
                str(DRIVER),
                "--root",
                str(root),
                "--at",
                window,
                "--signal",
                sig,
                "--",
                *runner_args(config, out),
            ],
            capture_output=True,
            text=True,
            timeout=900,
            env=env(CRASH_DRIVER_FIRED=str(fired_file), **(extra_env or {})),
            preexec_fn=default_signals,
        )
        stderr, code, fired = first.stderr, first.returncode, fired_file.exists()
    message = interrupted_line(stderr)
    null_after_first = sum(any(r.get(k) is None for k in NUMBERS) for rs in records(out).values() for r in rs)
    again = subprocess.run(
        [sys.executable, str(root / "runner.py"), *runner_args(config, out)],
        capture_output=True,
        text=True,
        timeout=900,
        env=env(),
    )
    found = records(out)
    identical = sum(
        len(found.get(name, [])) == 1 and all(found[name][0][k] == ref[k] for k in NUMBERS)
        for name, ref in reference.items()
    )
    duplicated = sum(len(found.get(name, [])) > 1 for name in reference)
    missing = sum(name not in found for name in reference)
    ok = (
        fired
        and code == 130
        and message is not None
        and "Traceback" not in stderr
        and null_after_first == 0
        and again.returncode == 0
        and identical == len(reference)
    )
    return {
        "fired": fired,
        "exit": code,
        "message": message or (stderr.strip().splitlines() or [""])[-1][:160],
        "traceback": "Traceback" in stderr,
        "null": null_after_first,
        "rerun_exit": again.returncode,
        "identical": identical,
        "duplicated": duplicated,
        "missing": missing,
        "ok": ok,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=ROOT)
    parser.add_argument("--out", type=Path, default=Path("/tmp/signal_windows"))
    parser.add_argument("--windows", default=",".join(name for name, _, _ in WINDOWS))
    parser.add_argument("--signals", default=",".join(SIGNALS))
    args = parser.parse_args()
    if "--jobs" in (args.root / "runner.py").read_text():
        JOBS[:] = ["--jobs", "1"]
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    config = tiny_study(args.out, seeds="[0, 1]", name="windows")
    ref = subprocess.run(
        [sys.executable, str(args.root / "runner.py"), *runner_args(config, args.out / "reference")],
        capture_output=True,
        text=True,
        timeout=900,
        env=env(),
    )
    if ref.returncode != 0:
        raise SystemExit(f"the uninterrupted run failed: {ref.stderr[-2000:]}")
    reference = {name: rs[0] for name, rs in records(args.out / "reference").items()}
    chosen = [w for w in WINDOWS if w[0] in args.windows.split(",")]
    passed = total = 0
    for name, at, _what in chosen:
        for sig in args.signals.split(","):
            result = run_trial(args.root, config, args.out / "trial", at, sig, reference)
            total += 1
            passed += result["ok"]
            verdict = "ok  " if result["ok"] else ("n/a " if not result["fired"] else "FAIL")
            print(
                f"{verdict} {name:24s} {sig:8s} exit {result['exit']:4d}  null {result['null']}  "
                f"rerun {result['rerun_exit']}  identical {result['identical']}/{len(reference)}  "
                f"| {result['message']}",
                flush=True,
            )
    # RANK=1 in the environment of a single process: the run must still write its record.
    out = args.out / "rank"
    result = subprocess.run(
        [sys.executable, str(args.root / "runner.py"), *runner_args(config, out)],
        capture_output=True,
        text=True,
        timeout=900,
        env=env(RANK="1"),
    )
    found = records(out)
    rank_ok = result.returncode == 0 and all(
        len(found.get(n, [])) == 1 and all(found[n][0][k] == r[k] for k in NUMBERS) for n, r in reference.items()
    )
    print(
        f"{'ok  ' if rank_ok else 'FAIL'} RANK=1 in the environment: exit {result.returncode}, "
        f"{sum(len(v) for v in found.values())} record(s) of {len(reference)}"
    )
    print(f"{passed + rank_ok}/{total + 1} trials passed")
    return 0 if passed == total and rank_ok else 1


if __name__ == "__main__":
    sys.exit(main())
