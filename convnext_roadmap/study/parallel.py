"""`--jobs N`: N runners on one study at once, the CPU's cores split between them.

Each job is an ordinary runner process (the same command, one job, `cores // N` threads);
the per-run locks and atomic records that let any number of runners share a study decide
who trains what, so the records are exactly those N separate runners would leave. The
parent forwards signals, waits, and draws the tables and figures once at the end.

Why: the default study's small layers (width x0.25, maps of 8x8 down to 1x1) do not keep
two threads busy; two single-thread runs at once train more images per second than one run
on two threads (benchmarks/jobs.py measures both, side by side).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from convnext_steps.complexity import forward_gmacs

from ..config.schema import StudyConfig
from ..data.registry import describe
from ..errors import ConfigError

RUNNER = Path(__file__).resolve().parents[2] / "runner.py"
# auto: several single-thread jobs while one training image of the study's largest model
# costs at most this many GMACs (forward, at the study's resolution and width); above it,
# one job with every core: where benchmarks/jobs.py finds the two cross (docs/speed.md).
SMALL_MODEL_GMACS = 0.5


def cpu_cores() -> int:
    """Cores this process may run on (the affinity mask: what a container or SLURM allows)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def largest_model_gmacs(study: StudyConfig, steps: list) -> float:
    """Forward GMACs of one training image of the study's most expensive step (counted once
    per step and shape by convnext_steps.complexity.forward_gmacs, which planning has usually filled)."""
    data = describe(study.train)
    return max(
        forward_gmacs(step, study.train.resolution, study.train.width_mult, data.num_classes, data.in_chans)
        for step in steps
    )


def parse_jobs(value: str) -> int | None:
    """`--jobs`: a positive number, or auto (None); anything else a ConfigError."""
    if str(value).strip() == "auto":
        return None
    try:
        jobs = int(value)
    except ValueError:
        jobs = 0
    if jobs < 1:
        raise ConfigError(f"--jobs {value!r} must be a positive number or auto")
    return jobs


def capped_jobs(jobs: int) -> tuple[int, str | None]:
    """More jobs than cores train no faster and split no thread: capped at the core count, with
    the line that says so."""
    cores = cpu_cores()
    if jobs <= cores:
        return jobs, None
    return cores, f"note: --jobs {jobs} is more than the {cores} cores this process may use: {cores} jobs"


def resolve_jobs(
    value: str, study: StudyConfig, steps: list, runs_todo: int, on_gpu: bool, world_size: int
) -> tuple[int, int | None]:
    """How many runner processes to start, and each one's CPU threads (None: leave torch's).

    `auto`: for a CPU study of small models (SMALL_MODEL_GMACS), one job per core and one
    thread per run, also when a single run is left: CPU kernels split their sums by thread, so
    a run's last bits depend on its thread count, and a fixed count keeps each record the
    same whether its run trained alone, beside others, or resumed after the others were done.
    Otherwise (a GPU, DDP, big models) one job with every core. `--jobs N`: N jobs, the cores
    split between them."""
    jobs = parse_jobs(value)
    if jobs is not None:
        jobs = capped_jobs(jobs)[0]
        if jobs > 1 and (on_gpu or world_size > 1):
            raise ConfigError(
                "--jobs > 1 runs several CPU runners at once; with GPUs or several devices per run "
                "use --shard i/n for several jobs instead"
            )
        # threads from the N asked for, not from the runs left: `--jobs 2` resumed with one run
        # to do still trains it on its share of the cores (the same bits as before the stop)
        return max(1, min(jobs, runs_todo)), (max(1, cpu_cores() // jobs) if jobs > 1 else None)
    if on_gpu or world_size > 1 or cpu_cores() < 2 or largest_model_gmacs(study, steps) > SMALL_MODEL_GMACS:
        return 1, None
    return max(1, min(cpu_cores(), runs_todo)), 1


def _stop_with_parent(parent: int):  # noqa: ANN202 - a preexec_fn
    """A job gets SIGTERM (a checkpoint, then exit 130) when the runner that started it dies,
    even by kill -9 (Linux: PR_SET_PDEATHSIG). Without it, jobs in their own session outlived
    a killed parent, holding their runs' locks: a rerun skipped those runs."""

    def preexec() -> None:
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # 1: PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # not Linux: nothing to do
            return
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def run_jobs(argv: list[str], jobs: int, threads: int) -> int:
    """Start `jobs` runners with the same arguments, `threads` CPU threads each; wait for all.
    Returns the worst exit code (130 if any was interrupted)."""
    children = []
    for k in range(jobs):
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "ROADMAP_JOB": f"{k + 1}/{jobs}"}
        command = [sys.executable, str(RUNNER), *argv, "--jobs", "1", "--threads", str(threads), "--no-report"]
        # Its own session: a terminal's Ctrl-C reaches the parent alone, which forwards it
        # once (twice would stop a job at once instead of at its next checkpoint).
        children.append(
            subprocess.Popen(command, env=env, start_new_session=True, preexec_fn=_stop_with_parent(os.getpid()))
        )

    def forward(signum: int, frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
    try:
        codes = [child.wait() for child in children]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    for code in (130, 2, 1):
        if code in codes:
            return code
    return max(codes, key=abs)
