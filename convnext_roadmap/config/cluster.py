"""A study's `cluster:` block: how `runner.py --submit slurm|local` asks for machines.

None of these keys changes what a run computes (they are not part of any run's hash); they
say where and how the runs are trained: the SLURM partition, account and time of one array
task, its CPUs, GPUs and memory, how many tasks run at once, nodes and tasks per node for
DDP runs, extra sbatch options and shell lines, and the rough throughput used to pack runs
into tasks (study/cluster.py; docs/scale.md).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from ..errors import ConfigError

# SLURM's time formats: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS
_TIME = re.compile(r"(?:(?P<days>\d+)-)?(?P<a>\d+)(?::(?P<b>\d+))?(?::(?P<c>\d+))?")
# sbatch options we write ourselves: the array, its logs, the signal and the requeue submitit relies on
RESERVED_SBATCH = frozenset({"array", "output", "error", "signal", "requeue", "open-mode", "wrap", "parsable"})
SBATCH_KEY = re.compile(r"[a-z][a-z0-9-]*")
# sbatch options that are keys of their own here
OWN_KEYS = {
    "partition": "partition",
    "account": "account",
    "qos": "qos",
    "time": "time",
    "nodes": "nodes",
    "cpus-per-task": "cpus_per_task",
    "gpus-per-node": "gpus_per_node",
    "mem": "mem_gb",
    "ntasks-per-node": "tasks_per_node",
    "job-name": "job_name",
}


@dataclass
class ClusterConfig:
    """One array task's request, and how runs are packed into tasks."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    # SLURM's time limit of one task, as sbatch takes it: "HH:MM:SS", "D-HH:MM:SS" or "MM";
    # a string (YAML reads 4:00:00 unquoted as the number 14400: a number is refused, saying so)
    time: str | int = "01:00:00"
    cpus_per_task: int = 1
    gpus_per_node: int = 0
    mem_gb: float | None = None  # memory per node (None: the partition's default)
    nodes: int = 1  # > 1 only for DDP runs: train.num_nodes
    tasks_per_node: int = 1  # > 1 only for DDP runs: one task per device (train.devices)
    # tasks running at once (SLURM: the array's %N; local: 0 = cores // threads)
    array_parallelism: int = 0
    threads: int | None = None  # torch CPU threads of each run (None: cpus_per_task)
    # Rough training throughput of one task in GMACs per second (3x forward multiply-adds x
    # images, as the dry run counts them): a number you set from a first run; `status` prints
    # the one the study's records measured. A single core of a current x86 CPU: ~10-20.
    gmacs_per_s: float = 10.0
    overhead_s: float = 20.0  # per run besides its training MACs: building, validation, the record
    pack_fraction: float = 0.8  # runs are packed into a task up to this share of `time`
    signal_delay_s: int = 120  # SIGUSR2 this long before the time limit: checkpoint and requeue
    max_requeues: int = 3  # time-outs a task may be requeued after (pre-emptions do not count)
    job_name: str | None = None  # None: roadmap-<study>
    sbatch: dict[str, str | int | bool] = field(default_factory=dict)  # extra options: {constraint: a100}
    setup: list[str] = field(default_factory=list)  # shell lines before each task (module load ...)

    def check(self) -> None:
        time_minutes(self.time)
        for name in ("cpus_per_task", "nodes", "tasks_per_node", "signal_delay_s"):
            if getattr(self, name) < 1:
                raise ConfigError(f"cluster.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("gpus_per_node", "array_parallelism", "max_requeues"):
            if getattr(self, name) < 0:
                raise ConfigError(f"cluster.{name} must be >= 0, got {getattr(self, name)}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"cluster.threads must be >= 1 or null, got {self.threads}")
        for name in ("gmacs_per_s", "mem_gb"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ConfigError(f"cluster.{name} must be a number > 0, got {value}")
        if not (math.isfinite(self.overhead_s) and self.overhead_s >= 0):
            raise ConfigError(f"cluster.overhead_s must be >= 0, got {self.overhead_s}")
        if not 0 < self.pack_fraction <= 1:
            raise ConfigError(f"cluster.pack_fraction must be in (0, 1], got {self.pack_fraction}")
        if self.signal_delay_s >= 60 * time_minutes(self.time):
            raise ConfigError(
                f"cluster.signal_delay_s={self.signal_delay_s} must be shorter than cluster.time ({self.time})"
            )
        for name in ("partition", "account", "qos", "job_name"):
            value = getattr(self, name)
            if value is not None and (not value.strip() or any(c.isspace() for c in value)):
                raise ConfigError(f"cluster.{name}: {value!r} must be a name without spaces, or null")
        for key in self.sbatch:
            option = key.replace("_", "-")
            if not SBATCH_KEY.fullmatch(option):
                raise ConfigError(
                    f"cluster.sbatch: {key!r} is not an sbatch option name (e.g. constraint, exclusive, mail-type)"
                )
            if option in RESERVED_SBATCH:
                raise ConfigError(
                    f"cluster.sbatch: {key!r} is set by --submit itself (the array, its logs, the "
                    "pre-emption signal and requeue); leave it out"
                )
            if option in OWN_KEYS:
                raise ConfigError(f"cluster.sbatch: {key!r} has its own key: set cluster.{OWN_KEYS[option]}")
        if not all(isinstance(line, str) and "\n" not in line for line in self.setup):
            raise ConfigError("cluster.setup must be a list of single shell lines")

    @property
    def world(self) -> int:
        """Processes of one task (srun starts each)."""
        return self.nodes * self.tasks_per_node

    def task_threads(self) -> int:
        return self.threads or self.cpus_per_task


def time_minutes(text: str | int) -> int:
    """SLURM's time formats as whole minutes (rounded up), what submitit asks for."""
    if not isinstance(text, str):
        raise ConfigError(
            f'cluster.time: {text!r} must be a quoted string such as "04:00:00" (YAML reads '
            "4:00:00 unquoted as the number 14400)"
        )
    match = _TIME.fullmatch(text.strip())
    if not match:
        raise ConfigError(
            f'cluster.time: {text!r} is not a SLURM time: give "HH:MM:SS", "D-HH:MM:SS" or minutes, e.g. "04:00:00"'
        )
    days = int(match["days"] or 0)
    parts = [int(p) for p in (match["a"], match["b"], match["c"]) if p is not None]
    if match["days"]:  # D-HH, D-HH:MM, D-HH:MM:SS
        hours, minutes, seconds = (parts + [0, 0])[:3]
    elif len(parts) == 3:
        hours, minutes, seconds = parts
    elif len(parts) == 2:  # MM:SS
        hours, (minutes, seconds) = 0, parts
    else:
        hours, minutes, seconds = 0, parts[0], 0
    total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    if total <= 0:
        raise ConfigError(f"cluster.time: {text!r} must be longer than 0")
    return math.ceil(total / 60)
