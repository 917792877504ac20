"""Train a study's runs one after the other, each under its lock, each leaving its record."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import time
from pathlib import Path

from .. import signals
from ..config.schema import StudyConfig
from ..store.locks import run_lock
from ..store.records import read_record, write_record
from ..train.checkpoints import drop_previous
from ..train.module import DivergedError
from ..train.ranks import process_rank
from ..train.run import Run, failed_record, quiet_lightning, train_run
from ..train.world import SOLO, World
from .plan import study_dirs
from .reuse import copy_reused, source_name


def format_seconds(seconds: float) -> str:
    seconds = int(seconds)
    return (
        f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"
    )


def execute(
    study: StudyConfig,
    preset: str,
    runs: list[Run],
    out_dir: Path,
    retry_failed: bool = False,
    profile: bool = False,
    world: World = SOLO,
) -> int:
    """Train every run not yet done; returns the exit code (0: all done). Under DDP (`world`
    of several ranks) rank 0 decides which runs there are to train, and for each run whether
    it trains (its lock, its record, a stop signal on any rank): every rank follows."""
    quiet_lightning()
    dirs = study_dirs(out_dir, study)
    todo = [r for r in runs if r.state not in ("done",) and not (r.state == "failed" and not retry_failed)]
    rank_zero = process_rank() == 0 if world.size == 1 else world.is_zero
    if world.size > 1:  # rank 0's list of runs, in its order: a record written meanwhile changed no rank's
        by_name = {r.name: r for r in runs}
        todo = [by_name[name] for name in world.from_zero([r.name for r in todo])]
    progress_bar = sys.stderr.isatty() and rank_zero
    job = os.environ.get("ROADMAP_JOB")  # one of several jobs (--jobs): say which
    say = (functools.partial(print, f"[job {job}]") if job else print) if rank_zero else (lambda *a, **k: None)
    started = time.time()
    finished_times: list[float] = []
    failures = [r for r in runs if r.state == "failed" and not retry_failed]
    reused = [r for r in todo if r.state == "reuse"]
    todo = [r for r in todo if r.state != "reuse"]
    for run in reused if rank_zero else []:
        with run_lock(dirs["locks"] / f"{run.name}.lock") as acquired:
            if acquired and not (run.record_path.exists() and read_record(run.record_path).done):
                copy_reused(study, preset, run, out_dir)
                say(f"reused: {run.name} from {source_name(run.reuse_from, out_dir)}", flush=True)
    for i, run in enumerate(todo, 1):
        if world.any(signals.received() is not None):  # a signal to any rank stops every rank here
            raise signals.RunInterrupted(
                signals.received() or "a signal to another rank",
                f"{len(finished_times)} run(s) trained and recorded, none in progress",
            )
        elapsed = time.time() - started
        eta = (
            f"ETA {format_seconds(sum(finished_times) / len(finished_times) * (len(todo) - i + 1))}"
            if finished_times
            else "ETA after the first run"
        )
        announce = (
            f"[run {i}/{len(todo)}] step {'' if run.step.index is None else f'{run.step.index} '}"
            f"{run.step.slug} seed {run.seed}{' (resuming)' if run.state == 'resume' else ''} | "
            f"elapsed {format_seconds(elapsed)} | {eta}"
        )
        lock = run_lock(dirs["locks"] / f"{run.name}.lock") if rank_zero else contextlib.nullcontext(None)
        with lock as acquired:
            # rank 0's lock decides for every rank (ranks 1..N hold none: rank 0 writes the record)
            acquired = world.from_zero(acquired)
            if not acquired:
                if not job:  # with --jobs the other jobs hold them: nothing to report
                    say(announce, flush=True)
                    say(f"  skipped: another runner holds {run.name}'s lock", flush=True)
                continue
            say(announce, flush=True)
            if world.from_zero(rank_zero and run.record_path.exists() and read_record(run.record_path).done):
                continue  # finished by another runner meanwhile
            run_started = time.time()
            try:
                record = train_run(study, preset, run, dirs, progress_bar, profile)
            except DivergedError as error:
                record = failed_record(study, preset, run, str(error), error.epoch, time.time() - run_started)
                failures.append(run)
                say(f"  FAILED: {error}; recorded in {run.record_path}; the study goes on", flush=True)
            if rank_zero:
                write_record(run.record_path, record)
                drop_previous(run.checkpoint_dir)
            finished_times.append(time.time() - run_started)
            if record.done:
                say(
                    f"  done: top-1 {record.top1:.2f}%  train {record.train_throughput:.0f} img/s"
                    f"  {format_seconds(record.wall_time_s)}",
                    flush=True,
                )
            if record.at_chance() and rank_zero:
                print(
                    f"warning: {run.name} ended at top-1 {record.top1:.2f}%, chance level for {record.num_classes} "
                    f"classes: it did not learn (too few images or steps for this recipe: more data, a larger "
                    "budget or another lr)",
                    file=sys.stderr,
                    flush=True,
                )
    signals.check(f"{len(finished_times)} run(s) trained and recorded, none in progress")
    say(
        f"study {study.name}: {len(finished_times)} run(s) trained in {format_seconds(time.time() - started)}; "
        f"records in {dirs['runs']}",
        flush=True,
    )
    if failures and rank_zero:
        print(
            f"error: {len(failures)} run(s) failed ({', '.join(r.name for r in failures)}); see their records; "
            "fix the recipe, then rerun with --retry-failed",
            file=sys.stderr,
        )
        return 1
    return 0
