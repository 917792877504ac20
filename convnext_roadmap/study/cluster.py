"""`runner.py --submit slurm|local`: a study's remaining runs as one submitit job array, and
`runner.py status`: where they stand.

Submitting plans the study as a dry run does, leaves out the runs that are finished (or
failed, without --retry-failed) and those an unfinished task of an earlier submission holds,
packs the rest into tasks by their estimated cost (`training_gmacs` / `cluster.gmacs_per_s`
+ `cluster.overhead_s`, up to `cluster.pack_fraction` of `cluster.time` per task), and submits
them as one array (SLURM: one sbatch call; local: submitit's LocalExecutor, one process per
task). What was submitted (job ids, each task's runs, the log folder, the pinned config) is
written to results/<study>/cluster/<id>/submission.json.

Each task is `StudyTask`: it runs the runner's own training loop (`runner.main`) on its runs
only (`--runs`), with the study's resolved config pinned at submission, one job, a fixed
thread count. So the per-run locks keep two tasks (or a task and a runner started by hand)
off the same run, finished runs are skipped, and a task that is requeued, resubmitted or
started again resumes its runs from their checkpoints. Pre-emption and time-outs: submitit's
SIGUSR2 (`cluster.signal_delay_s` before the time limit, or on pre-emption) makes the runner
checkpoint at the next batch and stop; the task then calls submitit's handler, which pickles
the task again (`checkpoint()`) and requeues it (SLURM: scontrol requeue; local: the
controller starts it again). A task killed outright (kill -9, a lost node) is resubmitted by
`status --resubmit` or a second `--submit`.

The end: the first `status` that finds every run recorded and no task left draws the tables
and figures, once (cluster/report.json says for which records; a later status only says so).
There is no dependent job: submitit's LocalExecutor cannot run one, and the status path is the
one tested here.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import pickle
import shlex
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .. import signals
from ..config.cluster import ClusterConfig, time_minutes
from ..config.schema import StudyConfig
from ..errors import ConfigError
from ..store.files import atomic_write_text, file_lock

EXTRA = "pip install -e '.[cluster]'"
SUBMISSION = "submission.json"
REPORT = "report.json"
REPO = Path(__file__).resolve().parents[2]
# A local task has no scheduler's time limit: its controller's timeout is set out of reach
# (time-outs and requeues are SLURM's; a local task is stopped with SIGUSR2 like a pre-empted one).
LOCAL_TIMEOUT_MIN = 60 * 24 * 365
# sacct states: waiting, running, over
QUEUED = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "SUSPENDED", "RESV_DEL_HOLD", "CONFIGURING"}
RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING", "RESIZING"}


def import_submitit() -> Any:
    try:
        import submitit
    except ImportError:
        raise ConfigError(f"--submit and status need submitit, an optional extra: {EXTRA}") from None
    return submitit


# ---------------------------------------------------------------- packing


@dataclass
class Item:
    """One run to submit: what a task needs to find it and what it is estimated to cost."""

    order: int  # its place in the study's plan
    name: str
    hash: str
    state: str  # todo, resume, reuse, failed (with --retry-failed)
    gmacs: float
    est_s: float


def task_budget_s(cluster: ClusterConfig) -> float:
    return cluster.pack_fraction * 60 * time_minutes(cluster.time)


def estimate_s(cluster: ClusterConfig, gmacs: float) -> float:
    return cluster.overhead_s + gmacs / cluster.gmacs_per_s


def pack(items: list[Item], budget_s: float) -> list[list[Item]]:
    """Runs into as few tasks as first-fit decreasing finds within `budget_s` each (a run
    longer than the budget gets a task of its own, and goes on after time-outs from its
    checkpoints), then spread longest first over that many tasks, each to the least loaded,
    when that keeps every task within the budget: the same number of tasks, ending closer
    together. Each task's runs in the study's order."""
    if not items:
        return []
    ordered = sorted(items, key=lambda i: (-i.est_s, i.order))
    first_fit: list[list[Item]] = []
    for item in ordered:
        for task in first_fit:
            if sum(i.est_s for i in task) + item.est_s <= budget_s:
                task.append(item)
                break
        else:
            first_fit.append([item])
    tasks: list[list[Item]] = [[] for _ in first_fit]
    for item in ordered:
        min(tasks, key=lambda t: (sum(i.est_s for i in t), len(t))).append(item)
    if max(sum(i.est_s for i in t) for t in tasks) > max(budget_s, max(i.est_s for i in items)):
        tasks = first_fit
    return sorted((sorted(t, key=lambda i: i.order) for t in tasks), key=lambda t: t[0].order)


# ---------------------------------------------------------------- submissions on disk


def cluster_dir(out_dir: Path, study_name: str) -> Path:
    return Path(out_dir) / study_name / "cluster"


def submissions(out_dir: Path, study_name: str) -> list[dict[str, Any]]:
    """Every submission of the study, oldest first, each with `dir` (its folder)."""
    found = []
    for path in sorted(cluster_dir(out_dir, study_name).glob(f"*/{SUBMISSION}")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise ConfigError(f"{path} cannot be read ({error}); move that submission folder away") from None
        data["dir"] = path.parent
        found.append(data)
    return sorted(found, key=lambda d: (d.get("submitted_ns", 0), d["id"]))


def task_log(sub: dict[str, Any], task: dict[str, Any]) -> Path:
    """The task's error stream (submitit's log): the runner's own lines, tracebacks."""
    return Path(sub["dir"]) / "logs" / task["job_id"] / f"{task['job_id']}_0_log.err"


def task_result(sub: dict[str, Any], task: dict[str, Any]) -> tuple[str, Any] | None:
    """submitit's outcome of a finished task: ("success", what it returned) or ("error", the
    traceback); None while it runs, or if it was killed before it could write one."""
    path = Path(sub["dir"]) / "logs" / task["job_id"] / f"{task['job_id']}_0_result.pkl"
    try:
        with path.open("rb") as handle:
            return pickle.load(handle)
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError):
        return None


def _local_alive(pid: int) -> bool:
    """Is the controller `pid` of a local task still there (not a zombie, not a reused pid)?"""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        try:  # not Linux: signal 0 says whether the pid exists
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return not Path("/proc").is_dir()
    return stat.rsplit(")", 1)[-1].split()[0] != "Z" and b"submitit" in cmdline


def slurm_states(job_ids: list[str]) -> dict[str, str]:
    """sacct's state of each array task (one call for all); UNKNOWN where sacct says nothing."""
    if not job_ids:
        return {}
    from submitit.slurm.slurm import SlurmInfoWatcher

    command = ["sacct", "-o", "JobID,State,NodeList", "--parsable2"]
    for array in sorted({j.split("_")[0] for j in job_ids}):
        command += ["-j", array]
    try:
        output = subprocess.check_output(command, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return dict.fromkeys(job_ids, "UNKNOWN")
    info = SlurmInfoWatcher().read_info(output)
    return {j: (info.get(j, {}).get("State") or "UNKNOWN").split()[0].upper() for j in job_ids}


def task_states(sub: dict[str, Any]) -> list[str]:
    """Each task of a submission: queued, running, finished, failed or unknown (a local task
    of another host; sacct not answering)."""
    tasks = sub["tasks"]
    if sub["executor"] == "slurm":
        states = slurm_states([t["job_id"] for t in tasks])
        found = []
        for task in tasks:
            state = states.get(task["job_id"], "UNKNOWN")
            if state in QUEUED:
                found.append("queued")
            elif state in RUNNING:
                found.append("running")
            elif state == "COMPLETED":
                result = task_result(sub, task)
                found.append("finished" if result and result[0] == "success" else "failed")
            elif state == "UNKNOWN":
                found.append("unknown")
            else:  # FAILED, TIMEOUT, CANCELLED, OUT_OF_MEMORY, NODE_FAIL, PREEMPTED, BOOT_FAIL, DEADLINE
                found.append("failed")
        return found
    found = []
    for task in tasks:
        result = task_result(sub, task)
        if result is not None:
            found.append("finished" if result[0] == "success" else "failed")
        elif sub.get("host") != socket.gethostname():
            found.append("unknown")
        elif _local_alive(int(task["job_id"])):
            beat = _read_json(Path(sub["dir"]) / "tasks" / f"{task['index']}.json")
            found.append("running" if beat and beat.get("state") == "running" else "queued")
        else:
            found.append("failed")  # killed: no result
    return found


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


LIVE = ("queued", "running", "unknown")


def held_runs(out_dir: Path, study_name: str) -> dict[str, tuple[str, str]]:
    """Run names an unfinished task holds, each with the submission and the job that holds it."""
    held = {}
    for sub in submissions(out_dir, study_name):
        for task, state in zip(sub["tasks"], task_states(sub), strict=True):
            if state in LIVE:
                for run in task["runs"]:
                    held[run["name"]] = (sub["id"], task["job_id"])
    return held


# ---------------------------------------------------------------- the task


class TaskFailed(RuntimeError):
    """A task whose runner stopped with an error: the message names its runs and its log."""


class StudyTask:
    """One array task: `runner.main` on its runs, under their locks (submitit's callable,
    pickled by reference: this module imports no torch)."""

    def __init__(
        self,
        submission_dir: Path,
        index: int,
        argv: list[str],
        runs: list[str],
        records: list[str],
        threads: int,
        slots: int,
    ) -> None:
        self.submission_dir = Path(submission_dir)
        self.index = index
        self.argv = list(argv)
        self.runs = list(runs)
        self.records = list(records)  # each run's record path (for the task's result)
        self.threads = threads
        self.slots = slots  # local: how many tasks train at once (0: no limit); SLURM: the array's %N

    def __call__(self) -> dict[str, Any]:
        os.environ["OMP_NUM_THREADS"] = str(self.threads)
        os.environ.pop("ROADMAP_JOB", None)
        if str(REPO) not in sys.path:
            sys.path.insert(0, str(REPO))
        stop: list[str] = []
        requeue = signal.getsignal(signal.SIGUSR2)  # submitit's: checkpoint() and requeue

        def pre_empted(signum: int, frame: Any) -> None:
            # SLURM's --signal (time limit near) or a pre-emption: stop at the next batch with a
            # checkpoint, as SIGUSR1 does; the requeue follows once the runner has stopped
            stop.append(signal.Signals(signum).name)
            signals._handler(signum, frame)

        signal.signal(signal.SIGUSR2, pre_empted)
        with self._slot():
            self._beat("running")
            import runner

            sys.stderr = lines = _ErrorLines(sys.stderr)
            try:
                code = runner.main(self.argv)
            finally:
                sys.stderr = lines.stream
        states = {name: _record_state(Path(path)) for name, path in zip(self.runs, self.records, strict=True)}
        if stop and code == 130 and callable(requeue):
            print(
                f"task {self.index}: {stop[0]}: its runs keep their checkpoints; requeueing",
                file=sys.stderr,
                flush=True,
            )
            requeue(signal.SIGUSR2, None)  # exits (requeued), or raises (not requeued: too many time-outs)
        pending = [name for name, state in states.items() if state == "missing"]
        if code == 130:
            raise TaskFailed(
                f"task {self.index} was stopped by a signal (pre-emption, scancel or Ctrl-C) with "
                f"{len(pending)} run(s) unrecorded ({', '.join(pending)}); they keep their checkpoints: "
                "python runner.py status --resubmit"
            )
        if code not in (0, 1) or (code == 1 and pending):
            raise TaskFailed(
                f"task {self.index}: runner.py exited with code {code}, run(s) "
                f"{', '.join(pending) or 'none'} unrecorded: "
                + (lines.errors[-1] if lines.errors else "see this task's log")
            )
        return {"code": code, "runs": states}

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """submitit's requeue: the same task again, which resumes its runs from their checkpoints
        and skips those recorded meanwhile."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(
            StudyTask(self.submission_dir, self.index, self.argv, self.runs, self.records, self.threads, self.slots)
        )

    def _beat(self, state: str) -> None:
        with contextlib.suppress(OSError):
            atomic_write_text(
                self.submission_dir / "tasks" / f"{self.index}.json",
                json.dumps(
                    {
                        "state": state,
                        "host": socket.gethostname(),
                        "pid": os.getpid(),
                        "since": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                    }
                ),
            )

    @contextlib.contextmanager
    def _slot(self) -> Iterator[None]:
        """Local tasks: one of `slots` slot locks, waited for (submitit's LocalExecutor starts
        every task at once; SLURM caps the array itself). A killed task's slot is taken over."""
        if not self.slots:
            yield
            return
        from ..store.locks import run_lock

        (self.submission_dir / "tasks").mkdir(parents=True, exist_ok=True)
        self._beat("waiting")
        stopped: list[str] = []
        # submitit lets SIGTERM pass in a task: while it waits, SIGTERM, SIGINT or SIGUSR2 end it
        watched = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2)
        before = {
            sig: signal.signal(sig, lambda signum, frame: stopped.append(signal.Signals(signum).name))
            for sig in watched
        }
        try:
            while not stopped:
                for k in range(self.slots):
                    with run_lock(self.submission_dir / "slots" / f"{k}.lock") as acquired:
                        if acquired:
                            for sig, handler in before.items():
                                signal.signal(sig, handler)
                            before.clear()
                            yield
                            return
                time.sleep(0.5)
        finally:
            for sig, handler in before.items():
                signal.signal(sig, handler)
        raise TaskFailed(
            f"task {self.index} was stopped by {stopped[0]} while it waited for a slot; nothing of it "
            "was trained: python runner.py status --resubmit"
        )


class _ErrorLines:
    """sys.stderr as it was, with the runner's `error:` lines kept: a failed task's reason."""

    def __init__(self, stream: Any) -> None:
        self.stream, self.errors = stream, []

    def write(self, text: str) -> int:
        self.errors += [line for line in str(text).splitlines() if line.startswith("error:")]
        return self.stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def _record_state(path: Path) -> str:
    data = _read_json(path)
    return data.get("status", "missing") if data else "missing"


# ---------------------------------------------------------------- submitting


def select_runs(runs: list, spec: str) -> list:
    """A task's `--runs name@hash,...`: those runs of the plan, each with the config hash it
    was submitted with (this node plans the same run, or the task stops and says why)."""
    wanted = dict(part.rsplit("@", 1) for part in spec.split(",") if part)
    by_name = {run.name: run for run in runs}
    for name, digest in wanted.items():
        if name not in by_name:
            raise ConfigError(f"--runs: {name} is not a run of this study (it was submitted with another config)")
        if by_name[name].hash != digest:
            raise ConfigError(
                f"--runs: {name} plans to config hash {by_name[name].hash} on this node, but was "
                f"submitted as {digest}: the submitting machine resolves its config otherwise "
                "(precision: auto is bf16 where the hardware has it): set train.precision in the "
                "study and submit again"
            )
    return [run for run in runs if run.name in wanted]


def check_request(study: StudyConfig, executor: str) -> None:
    """The cluster keys against the study's runs: one process per task, or a DDP run's ranks."""
    from ..train.ranks import world_size_of

    cluster, train = study.cluster, study.train
    world = world_size_of(study)
    if executor == "local":
        if cluster.world != 1:
            raise ConfigError(
                f"--submit local runs each task as one process on this machine: cluster.nodes x "
                f"cluster.tasks_per_node must be 1 x 1, got {cluster.nodes} x {cluster.tasks_per_node} "
                "(a DDP run's ranks are Lightning's own here)"
            )
        return
    if world == 1 and cluster.world != 1:
        raise ConfigError(
            f"cluster.nodes x cluster.tasks_per_node = {cluster.world} processes per task, but the "
            "study's runs are single-process: set both to 1, or train.devices and train.num_nodes "
            "for DDP"
        )
    if world > 1 and (cluster.nodes != train.num_nodes or cluster.world != world):
        raise ConfigError(
            f"a DDP run of {world} processes (train.devices {train.devices} x train.num_nodes "
            f"{train.num_nodes}) needs cluster.nodes: {train.num_nodes} and cluster.tasks_per_node: "
            f"{world // train.num_nodes} (one task per device), got {cluster.nodes} x "
            f"{cluster.tasks_per_node}"
        )
    if world > 1 and train.strategy == "auto":
        raise ConfigError("a multi-process run on SLURM needs train.strategy: ddp (or another DDP strategy)")


def pinned_config(study: StudyConfig, preset: str) -> str:
    """The study as resolved at submission (preset, YAML, --set and flags), as a YAML file the
    tasks load instead: editing the study's YAML while the array waits changes nothing."""
    import yaml

    return (
        "# The study as submitted (resolved: preset, YAML, --set and flags): what every task of\n"
        "# this submission trains. Written by runner.py --submit; not to be edited.\n"
        + yaml.safe_dump({"preset": preset, **asdict(study)}, sort_keys=False)
    )


def submit_study(study: StudyConfig, preset: str, runs: list, args: Any, executor: str | None = None) -> int:
    """Submit the study's remaining runs as one array; print what was submitted. Returns 0."""
    from .cost import training_gmacs
    from .parallel import cpu_cores

    executor = executor or args.submit
    if args.shard:
        raise ConfigError("--submit packs the whole study into tasks itself: leave out --shard")
    if getattr(args, "runs", None):
        raise ConfigError("--runs is a task's own flag: leave it out with --submit")
    if str(args.jobs) != "auto":
        raise ConfigError(
            "--jobs is for one machine; with --submit each task trains one run at a time on "
            "cluster.threads (default: cluster.cpus_per_task) threads: set those"
        )
    check_request(study, executor)
    cluster = study.cluster
    out_dir = Path(args.out).resolve()
    plots_dir = Path(args.plots).resolve()
    submitit = None if args.dry_run else import_submitit()
    held = held_runs(out_dir, study.name)
    wanted = [r for r in runs if r.state in ("todo", "resume", "reuse") or (r.state == "failed" and args.retry_failed)]
    kept = [r for r in wanted if r.name in held]
    left = [r for r in wanted if r.name not in held]
    chosen = {r.name for r in left}
    items = [
        Item(i, r.name, r.hash, r.state, gmacs, estimate_s(cluster, gmacs))
        for i, r in enumerate(runs)
        if r.name in chosen
        for gmacs in [0.0 if r.state == "reuse" else training_gmacs(study, r)]
    ]
    status_command = (
        f"python runner.py status --study {study.name}"
        + (f" --out {args.out}" if out_dir != (REPO / "results").resolve() else "")
        + (f" --plots {args.plots}" if plots_dir != (REPO / "plots").resolve() else "")
    )
    if kept:
        by_sub: dict[str, set[str]] = {}
        for r in kept:
            by_sub.setdefault(held[r.name][0], set()).add(held[r.name][1])
        print(
            f"{len(kept)} run(s) left out: unfinished tasks hold them ("
            + "; ".join(
                f"submission {sid}: {len(jobs)} task(s), job(s) {', '.join(sorted(jobs)[:4])}"
                + (" ..." if len(jobs) > 4 else "")
                for sid, jobs in sorted(by_sub.items())
            )
            + ")"
        )
    if not items:
        print(
            "nothing to submit: "
            + ("every run is recorded" if not kept else "the rest are held by the tasks above")
            + f"; progress: {status_command}"
        )
        return 0
    budget = task_budget_s(cluster)
    tasks = pack(items, budget)
    threads = cluster.task_threads()
    if executor == "local":
        slots = cluster.array_parallelism or max(1, cpu_cores() // threads)
    else:
        slots = cluster.array_parallelism or len(tasks)
    sizes = sorted(len(t) for t in tasks)
    per_task = f"{sizes[0]}" if sizes[0] == sizes[-1] else f"{sizes[0]}-{sizes[-1]}"
    longest = max(sum(i.est_s for i in t) for t in tasks)
    plan_line = (
        f"{len(items)} run(s) in {len(tasks)} task(s), {per_task} run(s) per task, at most "
        f"{min(slots, len(tasks))} at once; longest task ~{_minutes(longest)} estimated "
        f"(cluster.gmacs_per_s {cluster.gmacs_per_s:g}, cluster.time {cluster.time})"
    )
    too_long = [i.name for t in tasks for i in t if i.est_s > 60 * time_minutes(cluster.time)]
    if args.dry_run:
        print(f"dry run: --submit {executor} would submit " + plan_line)
        for k, task in enumerate(tasks):
            print(f"  task {k}: ~{_minutes(sum(i.est_s for i in task))}  " + ", ".join(i.name for i in task))
        if too_long:
            print(
                f"note: {len(too_long)} run(s) are estimated longer than cluster.time; they go on from their "
                "checkpoints after each time-out (cluster.max_requeues) - or raise cluster.time"
            )
        return 0
    from ..train.weights import ensure_torchvision_weights  # compute nodes may have no network

    for slug in dict.fromkeys(r.step.slug for r in left if r.train.pretrained):
        ensure_torchvision_weights(slug)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")[:-3] + f"-{uuid.uuid4().hex[:4]}"  # sorts by time
    sub_dir = cluster_dir(out_dir, study.name) / stamp
    (sub_dir / "logs").mkdir(parents=True)
    config_path = sub_dir / "study.yaml"
    atomic_write_text(config_path, pinned_config(study, preset))
    run_paths = {r.name: str(r.record_path.resolve()) for r in left}
    base = [
        "--config",
        str(config_path),
        "--out",
        str(out_dir),
        "--plots",
        str(plots_dir),
        "--jobs",
        "1",
        "--threads",
        str(threads),
        "--no-report",
    ]
    base += ["--retry-failed"] if args.retry_failed else []
    base += ["--profile"] if args.profile else []
    callables = [
        StudyTask(
            sub_dir,
            k,
            base + ["--runs", ",".join(f"{i.name}@{i.hash}" for i in task)],
            [i.name for i in task],
            [run_paths[i.name] for i in task],
            threads,
            slots if executor == "local" else 0,
        )
        for k, task in enumerate(tasks)
    ]
    pool = make_executor(submitit, executor, sub_dir / "logs" / "%j", study, len(tasks), slots)
    signals.check("nothing was submitted yet")
    jobs = _submit(pool, callables, executor, sub_dir / "logs", threads)
    record = {
        "id": stamp,
        "study": study.name,
        "preset": preset,
        "executor": executor,
        "host": socket.gethostname(),
        "submitted_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "submitted_ns": time.time_ns(),
        "job_id": jobs[0].job_id.split("_")[0] if executor == "slurm" else None,
        "config": str(config_path),
        "logs": str(sub_dir / "logs"),
        "threads": threads,
        "parallel": slots,
        "out": str(out_dir),
        "plots": str(plots_dir),
        "retry_failed": bool(args.retry_failed),
        "tasks": [
            {
                "index": k,
                "job_id": str(job.job_id),
                "est_s": round(sum(i.est_s for i in task), 1),
                "runs": [
                    {"name": i.name, "hash": i.hash, "gmacs": round(i.gmacs, 3), "est_s": round(i.est_s, 1)}
                    for i in task
                ],
            }
            for k, (job, task) in enumerate(zip(jobs, tasks, strict=True))
        ],
    }
    atomic_write_text(sub_dir / SUBMISSION, json.dumps(record, indent=2) + "\n")
    ids = [str(j.job_id) for j in jobs]
    job_text = (
        f"job {record['job_id']} (" + (f"an array of {len(jobs)} tasks)" if len(jobs) > 1 else "1 task)")
        if executor == "slurm"
        else f"local job(s) {ids[0]}"
        + (f" .. {ids[-1]}" if len(ids) > 1 else "")
        + " (one process per task, on this machine)"
    )
    print(f"submitted study {study.name}: {job_text}")
    print(plan_line)
    if too_long:
        print(
            f"note: {len(too_long)} run(s) are estimated longer than cluster.time; they go on from their "
            "checkpoints after each time-out (cluster.max_requeues)"
        )
    print(f"logs: {sub_dir / 'logs'}/<job id>/   (submission: {sub_dir / SUBMISSION})")
    print(f"progress: {status_command}   (it draws the tables and figures once every run is recorded)")
    return 0


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def make_executor(submitit: Any, kind: str, folder: Path, study: StudyConfig, tasks: int, slots: int) -> Any:
    """submitit's executor for the study's cluster keys: SlurmExecutor or LocalExecutor."""
    cluster = study.cluster
    if kind == "local":
        pool = _with_entry(submitit.LocalExecutor)(folder=folder, max_num_timeout=cluster.max_requeues)
        pool.update_parameters(timeout_min=LOCAL_TIMEOUT_MIN, signal_delay_s=cluster.signal_delay_s)
        return pool
    try:
        pool = _with_entry(submitit.SlurmExecutor)(folder=folder, max_num_timeout=cluster.max_requeues)
    except RuntimeError:
        raise ConfigError(
            "--submit slurm needs SLURM's commands (srun, sbatch) on the PATH: run it on the "
            "cluster's login node, or try --submit local here"
        ) from None
    extra: dict[str, Any] = {"requeue": True}  # submitit's checkpoint requeues with scontrol requeue
    extra.update({k.replace("_", "-"): v for k, v in cluster.sbatch.items() if v is not False})
    params: dict[str, Any] = {
        "job_name": cluster.job_name or f"roadmap-{study.name}",
        "time": time_minutes(cluster.time),
        "nodes": cluster.nodes,
        "ntasks_per_node": cluster.tasks_per_node,
        "cpus_per_task": cluster.cpus_per_task,
        "signal_delay_s": cluster.signal_delay_s,
        "array_parallelism": max(1, min(slots, tasks)),
        "additional_parameters": extra,
        "setup": [f"export OMP_NUM_THREADS={cluster.task_threads()}", *cluster.setup],
    }
    if cluster.gpus_per_node:
        params["gpus_per_node"] = cluster.gpus_per_node
    if cluster.mem_gb is not None:
        params["mem"] = (
            f"{int(cluster.mem_gb)}GB" if cluster.mem_gb == int(cluster.mem_gb) else f"{int(cluster.mem_gb * 1024)}MB"
        )
    for name in ("partition", "account", "qos"):
        if getattr(cluster, name):
            params[name] = getattr(cluster, name)
    pool.update_parameters(**params)
    return pool


def _with_entry(executor: type) -> type:
    """submitit's executor whose tasks start through this module's `task_main` (below)."""

    class Executor(executor):  # type: ignore[misc, valid-type]
        @property
        def _submitit_command_str(self) -> str:
            return " ".join([self.python, "-u -m", __name__, shlex.quote(str(self.folder))])

    Executor.__name__ = executor.__name__
    return Executor


def task_main(folder: str) -> None:
    """A task's process: submitit's own `_submit` main, after making sure its plugin lookup can
    run (submitit 1.5.3 imports pkg_resources, which setuptools 82 and later no longer ship: a
    stand-in over importlib.metadata's entry points does what submitit asks of it)."""
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        import importlib.metadata
        import types

        class EntryPoint:
            def __init__(self, point: Any) -> None:
                self.point, self.name, self.module_name = point, point.name, point.module

            def load(self) -> Any:
                return self.point.load()

        shim = types.ModuleType("pkg_resources")
        shim.iter_entry_points = lambda group: [EntryPoint(p) for p in importlib.metadata.entry_points(group=group)]
        sys.modules["pkg_resources"] = shim
    from submitit.core.submission import process_job

    process_job(folder)


def _submit(pool: Any, callables: list[StudyTask], executor: str, logs: Path, threads: int) -> list:
    """One submitit call for the whole array. Local tasks are started with this process's
    output streams pointed at a log file (a caller reading them would otherwise wait for the
    last task) and SIGHUP ignored (closing the terminal leaves them running, as nohup)."""
    if executor != "local":
        try:
            return pool.submit_array(callables)
        except Exception as error:  # sbatch refused it: its message is the one to show
            message = " ".join(str(error).split())[-600:]
            raise ConfigError(f"sbatch refused the array: {message}") from None
    from submitit.core.utils import environment_variables

    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(fd) for fd in (0, 1, 2)]
    hangup = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with open(os.devnull, "rb") as null, open(logs / "controllers.log", "ab") as log:
            os.dup2(null.fileno(), 0)
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            with environment_variables(OMP_NUM_THREADS=threads):
                return pool.submit_array(callables)
    finally:
        for fd, copy in zip((0, 1, 2), saved, strict=True):
            os.dup2(copy, fd)
            os.close(copy)
        signal.signal(signal.SIGHUP, hangup)


# ---------------------------------------------------------------- status


def status_command(args: Any) -> int:
    """`runner.py status --study S`: the runs' states from records, locks and the scheduler,
    the failed tasks with their runs and logs; at the end the tables and figures, once.
    `--resubmit`: the runs no task holds and no record has, submitted again."""
    from ..config.load import load_study
    from ..config.schema import check_study_name
    from .plan import plan_runs
    from .reuse import mark_reusable

    if not args.study:
        raise ConfigError("status needs --study NAME (a study submitted with --submit)")
    check_study_name(args.study, "--study")
    out_dir = Path(args.out).resolve()
    subs = submissions(out_dir, args.study)
    if not subs:
        raise ConfigError(
            f"no submission of study {args.study} in {cluster_dir(out_dir, args.study)}; submit it "
            "with python runner.py --config STUDY.yaml --submit slurm (or local)"
        )
    latest = subs[-1]
    study, preset = load_study("cpu", Path(latest["config"]))
    if Path(args.plots).resolve() == (REPO / "plots").resolve() and latest.get("plots"):
        args.plots = Path(latest["plots"])  # where the submission said, unless --plots says otherwise
    import_submitit()
    runs = plan_runs(study, out_dir)
    mark_reusable(study, out_dir, runs)
    dirs_locks = out_dir / study.name / "locks"
    holders: dict[str, tuple[dict, dict, str]] = {}  # run name -> its latest submission's task and state
    states_of = {}
    for sub in subs:
        states = task_states(sub)
        states_of[sub["id"]] = states
        for task, state in zip(sub["tasks"], states, strict=True):
            for run in task["runs"]:
                if state in LIVE or run["name"] not in holders or holders[run["name"]][2] not in LIVE:
                    holders[run["name"]] = (sub, task, state)
    counts: dict[str, list[str]] = {k: [] for k in ("done", "failed", "running", "queued", "lost", "todo")}
    for run in runs:
        if run.state in ("done", "failed"):
            counts[run.state].append(run.name)
        elif _locked(dirs_locks / f"{run.name}.lock"):
            counts["running"].append(run.name)
        elif run.name in holders and holders[run.name][2] in LIVE:
            counts["queued"].append(run.name)
        elif run.name in holders:
            counts["lost"].append(run.name)  # its task ended without recording it
        else:
            counts["todo"].append(run.name)
    labels = {"lost": "in ended tasks, unrecorded", "todo": "never submitted"}
    print(
        f"study {study.name}: {len(runs)} run(s) - "
        + ", ".join(f"{len(v)} {labels.get(k, k)}" for k, v in counts.items() if v)
    )
    for sub in subs:
        states = states_of[sub["id"]]
        if sub is not latest and all(s not in LIVE and s != "failed" for s in states):
            continue  # an old submission that ended well: nothing to say
        tally = {s: states.count(s) for s in ("running", "queued", "unknown", "finished", "failed") if s in states}
        job = f"job {sub['job_id']}, " if sub.get("job_id") else ""
        print(
            f"submission {sub['id']} ({sub['executor']}, {job}{len(states)} task(s)): "
            + ", ".join(f"{n} {s}" for s, n in tally.items())
            + f"; logs in {sub['logs']}"
        )
        for task, state in zip(sub["tasks"], states, strict=True):
            names = [r["name"] for r in task["runs"]]
            if state == "failed":
                open_runs = [n for n in names if n not in counts["done"] and n not in counts["failed"]]
                again = sorted(
                    {holders[n][0]["id"] for n in open_runs if holders[n][0] is not sub and holders[n][2] in LIVE}
                )
                later = (
                    "; its runs are recorded since"
                    if not open_runs
                    else f"; resubmitted in {', '.join(again)}"
                    if again
                    else ""
                )
                print(
                    f"  task {task['index']} (job {task['job_id']}) FAILED: runs {', '.join(names)}"
                    + (f" ({len(names) - len(open_runs)} recorded since)" if 0 < len(open_runs) < len(names) else "")
                    + f"; log: {task_log(sub, task)}{later}"
                )
                reason = _failure(sub, task)
                if reason and open_runs:
                    print(f"    {reason}")
            elif state in ("running", "unknown") and len(sub["tasks"]) <= 50:
                busy = [n for n in names if n in counts["running"]]
                print(
                    f"  task {task['index']} (job {task['job_id']}) {state}"
                    + (f": training {', '.join(busy)}" if busy else "")
                    + f"; {sum(n in counts['done'] for n in names)}/{len(names)} done"
                )
        if "unknown" in states:
            print(
                "  unknown: "
                + (
                    "sacct did not answer"
                    if sub["executor"] == "slurm"
                    else f"local tasks of {sub.get('host')}, not this host"
                )
                + "; counted as unfinished"
            )
    _throughput(study, runs)
    missing = counts["lost"] + counts["todo"]
    live = counts["running"] + counts["queued"]
    if args.resubmit:
        if not missing:
            print("nothing to resubmit" + ("" if not live else f": {len(live)} run(s) are still held by tasks"))
            return 0
        print(f"resubmitting {len(missing)} run(s)")
        args.submit, args.shard, args.runs, args.jobs, args.dry_run = latest["executor"], None, None, "auto", False
        args.retry_failed = bool(latest.get("retry_failed"))
        return submit_study(study, preset, runs, args, executor=latest["executor"])
    if missing and not live:
        print(
            f"{len(missing)} run(s) have no record and no task: python runner.py status --study {study.name} "
            f"--out {args.out} --resubmit"
        )
        return 0
    if live or missing:
        return 0
    _draw_once(study, out_dir, Path(args.plots), runs)
    return 0


def _locked(path: Path) -> bool:
    """A run lock held by a live process (of this host, or any lock of another host)."""
    from ..store.locks import stale_lock

    return path.exists() and stale_lock(path) is None


def _failure(sub: dict[str, Any], task: dict[str, Any]) -> str:
    """The last line of a failed task's error: submitit's traceback, or what killed it."""
    result = task_result(sub, task)
    if result and result[0] == "error":
        lines = [line for line in str(result[1]).strip().splitlines() if line.strip()]
        return lines[-1].strip()[:400] if lines else ""
    if sub["executor"] == "local":
        return "the task's process ended without a result (killed: kill -9, out of memory, a crash)"
    return "no result from the task: see its log (time limit, memory, node failure, scancel)"


def _throughput(study: StudyConfig, runs: list) -> None:
    """What the study's records measured, against the estimate the packing used."""
    from ..store.records import read_record
    from .cost import training_gmacs

    walls, estimates, rates = [], [], []
    for run in runs:
        if run.state == "done":
            record = read_record(run.record_path)
            if record.wall_time_s and not record.reused_from and record.done:
                gmacs = training_gmacs(study, run)
                walls.append(record.wall_time_s)
                estimates.append(estimate_s(study.cluster, gmacs))
                rates.append(gmacs / record.wall_time_s)
    if rates:

        def median(values: list[float]) -> float:
            return sorted(values)[len(values) // 2]

        print(
            f"measured: {median(walls):.0f} s per run (median of {len(walls)} record(s); estimated "
            f"{median(estimates):.0f} s), {median(rates):.3g} training GMACs/s over its whole wall time "
            f"(cluster.gmacs_per_s {study.cluster.gmacs_per_s:g} + cluster.overhead_s "
            f"{study.cluster.overhead_s:g} per run)"
        )


def _draw_once(study: StudyConfig, out_dir: Path, plots_dir: Path, runs: list) -> None:
    """Tables and figures of a study whose every run is recorded, drawn by the first status
    that finds it so (cluster/report.json names the records they were drawn from)."""
    from ..report import draw_figures, markdown_table, write_tables

    marker = cluster_dir(out_dir, study.name) / REPORT
    recorded = sorted(f"{r.name}@{r.hash}" for r in runs)
    with file_lock(cluster_dir(out_dir, study.name) / ".report.lock"):
        drawn = _read_json(marker)
        if drawn and drawn.get("records") == recorded:
            print(
                f"every run is recorded; tables and figures were drawn at {drawn.get('drawn_at')} "
                f"(python runner.py plot --study {study.name} draws them again)"
            )
            return
        study_dir = out_dir / study.name
        table = write_tables(study_dir)
        print("every run is recorded and no task is left: the tables and figures")
        print(markdown_table(table))
        for path in draw_figures(study_dir, plots_dir / study.name):
            print(f"wrote {path}")
        atomic_write_text(
            marker,
            json.dumps(
                {
                    "drawn_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                    "plots": str(plots_dir / study.name),
                    "records": recorded,
                },
                indent=1,
            )
            + "\n",
        )


__all__ = [
    "StudyTask",
    "pack",
    "submit_study",
    "status_command",
    "select_runs",
    "make_executor",
    "check_request",
    "import_submitit",
    "held_runs",
]


if __name__ == "__main__":  # a task's process (submitit runs `python -u -m convnext_roadmap.study.cluster FOLDER`)
    task_main(sys.argv[1])
