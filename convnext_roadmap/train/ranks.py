"""Which process this is among the ranks of one run, and how many ranks a run has."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config.schema import StudyConfig


def process_rank() -> int:
    """This process's global rank when Lightning's DDP launcher or SLURM's srun started several
    processes (each runs the whole study loop in step; only rank 0 takes locks and writes).
    Rank variables count only in a world of several processes (WORLD_SIZE or SLURM_NTASKS > 1):
    a RANK left in the environment by something else made a single process train every run
    without taking its lock or writing its record."""
    sizes = [int(os.environ[n]) for n in ("WORLD_SIZE", "SLURM_NTASKS") if os.environ.get(n, "").isdigit()]
    if max(sizes, default=1) <= 1:
        return 0
    for name in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


def world_size_of(study: StudyConfig) -> int:
    """Processes that train one run together, when the config says (devices x num_nodes)."""
    devices = str(study.train.devices)
    if devices.strip() in ("auto", "-1"):  # as Lightning takes them: every CUDA device of the node, else 1
        from .gpu import auto_devices

        per_node = auto_devices(study.train.accelerator)
    else:
        per_node = int(devices) if devices.isdigit() else len(devices.split(",")) if "," in devices else 1
    return per_node * study.train.num_nodes
