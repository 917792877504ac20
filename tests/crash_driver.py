#!/usr/bin/env python3
"""Run runner.py with a signal sent to itself at a precise moment: the runner as a user runs
it, hit by SIGTERM/SIGUSR1/SIGINT/SIGKILL exactly in one window (a precise external kill).

    python tests/crash_driver.py --root REPO --at WHEN --signal SIGTERM -- <runner.py arguments>

--root is the checkout whose runner.py and convnext_roadmap/ run (measure an older commit with it).
WHEN is one of
  batch:E:B          after batch B of epoch E has trained (before the runner's batch-end hooks)
  save-during:STEP   while the checkpoint at optimizer step STEP is written (the k-th such write
                     with save-during:STEP:k)
  save-after:STEP    right after that checkpoint is written
  plan               while the study is planned (outside training)
  fit-end            after training, before the record is assembled (git_state)
  record-during      while the record is written
  record-after       right after the record is written
  tables             while the tables are drawn
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--at", required=True)
    parser.add_argument("--signal", default="SIGTERM")
    parser.add_argument("rest", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    sys.path.insert(0, str(args.root))
    sig = getattr(signal, args.signal)
    fired: list[bool] = []

    def fire() -> None:
        if not fired:
            fired.append(True)
            if os.environ.get("CRASH_DRIVER_FIRED"):  # tells a campaign that the window occurred
                Path(os.environ["CRASH_DRIVER_FIRED"]).write_text(args.at)
            os.kill(os.getpid(), sig)

    kind, _, spec = args.at.partition(":")
    import torch  # noqa: F401 - patched below before the runner imports it

    if kind == "batch":
        from convnext_roadmap.train.callbacks import DeterministicResume

        epoch, batch = (int(x) for x in spec.split(":"))
        original = DeterministicResume.on_train_batch_end

        def on_train_batch_end(self, trainer, module, outputs, batch_data, batch_idx):
            original(self, trainer, module, outputs, batch_data, batch_idx)
            if trainer.current_epoch == epoch and batch_idx == batch:
                fire()

        DeterministicResume.on_train_batch_end = on_train_batch_end
    elif kind in ("save-during", "save-after"):
        parts = [int(x) for x in spec.split(":")]
        step, nth = parts[0], (parts[1] if len(parts) > 1 else 1)
        real_save = torch.save
        seen = []

        def save(obj, handle, *a, **k):
            match = isinstance(obj, dict) and obj.get("global_step") == step and "loops" in obj
            if match:
                seen.append(True)
            if match and len(seen) == nth and kind == "save-during":
                fire()  # the handler runs now; the write goes on
            result = real_save(obj, handle, *a, **k)
            if match and len(seen) == nth and kind == "save-after":
                fire()
            return result

        torch.save = save
    elif kind == "plan":
        import convnext_roadmap.study.plan as study

        real_plan = study.plan_runs

        def plan_runs(*a, **k):
            fire()
            return real_plan(*a, **k)

        study.plan_runs = plan_runs
    elif kind == "fit-end":
        import convnext_roadmap.study.plan as study

        real_git = study.git_state

        def git_state():
            fire()
            return real_git()

        study.git_state = git_state
    elif kind in ("record-during", "record-after"):
        import convnext_roadmap.store.records as records
        import convnext_roadmap.study.plan as study

        real_write = records.atomic_write_text

        def atomic_write_text(path, text):
            if kind == "record-during" and "/runs/" in str(path):
                fire()
            real_write(path, text)
            if kind == "record-after" and "/runs/" in str(path):
                fire()

        records.atomic_write_text = atomic_write_text
    elif kind == "tables":
        import convnext_roadmap.report as report

        real_tables = report.write_tables

        def write_tables(*a, **k):
            fire()
            return real_tables(*a, **k)

        report.write_tables = write_tables
    else:
        parser.error(f"unknown --at {args.at}")

    rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
    sys.argv = [str(args.root / "runner.py"), *rest]
    import runner

    return runner.main(rest)


if __name__ == "__main__":
    sys.exit(main())
