"""The processes that train a study's runs together (DDP), started once, before the first run,
and the decisions they take together.

Every rank runs the whole study loop in step with the others, so anything that decides whether
a run trains (its lock, its record, a stop signal, the data's fingerprint) must be one decision
for all of them: rank 0 takes it and every rank follows. A rank deciding on its own skipped a
run the others trained, and they waited in the next collective for ever.

Lightning starts its ranks (the subprocess launcher) or finds them (SLURM, torchrun) when a
Trainer first fits. Here that happens before the study loop, with the Trainer settings of the
study: the process group then exists before the first lock is taken, and every later fit finds
it initialised and uses it. The decisions go through a gloo group of their own (CPU tensors,
never a CUDA stream), whatever the training's backend.

A single process (the CPU default) gets `SOLO`: no process group, every decision its own.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import ConfigError, DataError

if TYPE_CHECKING:
    from ..config.schema import StudyConfig

T = TypeVar("T")


@dataclass
class World:
    """This process's place among the ranks that train each run."""

    rank: int = 0
    size: int = 1
    group: Any = None  # a gloo process group for the decisions (None: a single process)
    children: list[int] = field(default_factory=list)  # ranks this process started (Lightning's launcher)

    @property
    def is_zero(self) -> bool:
        return self.rank == 0

    def from_zero(self, value: T) -> T:
        """Rank 0's `value`, on every rank (rank 0's own value on a single process)."""
        if self.size == 1:
            return value
        import torch.distributed as dist

        box = [value if self.rank == 0 else None]
        dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    def decide_on_zero(self, decide: Callable[[], T]) -> T:
        """`decide()` run on rank 0 only, its result (or its ConfigError / DataError) on every
        rank: the others neither repeat its work nor wait for ever when it fails."""
        outcome: tuple[str, Any] | None = None
        if self.rank == 0:
            try:
                outcome = ("ok", decide())
            except (ConfigError, DataError) as error:
                outcome = (type(error).__name__, str(error))
                if self.size == 1:
                    raise
        outcome = self.from_zero(outcome)
        kind, value = outcome
        if kind == "ok":
            return value
        raise (DataError if kind == "DataError" else ConfigError)(value)

    def any(self, flag: bool) -> bool:
        """Whether `flag` holds on any rank."""
        if self.size == 1:
            return flag
        import torch
        import torch.distributed as dist

        tensor = torch.tensor([int(flag)], dtype=torch.int32)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX, group=self.group)
        return bool(tensor.item())


SOLO = World()


def start_world(study: StudyConfig) -> World:
    """The ranks of the study's runs, each in the process group: started by Lightning's
    launcher (rank 0 starts the others, which run the same command) or found in the
    environment (SLURM, torchrun). SOLO for a study of one process per run."""
    from .ranks import world_size_of

    if world_size_of(study) == 1:
        return SOLO
    import pytorch_lightning as pl
    import torch.distributed as dist
    from lightning_fabric.plugins.environments import SLURMEnvironment

    from .. import signals

    cfg = study.train
    plugins = [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else None
    trainer = pl.Trainer(
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy=cfg.strategy,
        plugins=plugins,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    strategy = trainer.strategy
    if trainer.world_size == 1:
        return SOLO
    launcher = strategy.launcher
    if launcher is not None and type(launcher).__name__ != "_SubprocessScriptLauncher":
        # spawn and fork launchers run the fit in new processes that do not run the study loop
        raise ConfigError(
            f"train.strategy={cfg.strategy!r} starts its ranks by {type(launcher).__name__}; every rank "
            "must run the study loop: use strategy ddp (or a ddp_* variant without spawn/fork)"
        )
    if not dist.is_initialized():
        if launcher is not None:
            launcher.launch(strategy.setup_environment)  # starts the other ranks on this node, if it must
        else:
            strategy.setup_environment()
    children = [proc.pid for proc in getattr(launcher, "procs", [])]
    if children:
        signals.forward_to(children)  # a stop signal to rank 0 reaches every rank it started
    world = World(
        rank=dist.get_rank(), size=dist.get_world_size(), group=dist.new_group(backend="gloo"), children=children
    )
    if world.size != world_size_of(study):
        print(
            f"warning: the study plans {world_size_of(study)} process(es) per run and Lightning started {world.size}",
            file=sys.stderr,
            flush=True,
        )
    return world
