"""Checkpoints that are never half-written, and checkpoints that cannot be loaded set aside.

Lightning's own writer goes through fsspec, which on a local disk writes a temporary file in
/tmp and moves it: across file systems that is a copy into the target, so a kill during it
leaves a truncated last.ckpt, and nothing is fsynced. `AtomicCheckpointIO` writes next to
the target, fsyncs and renames: a reader finds the old checkpoint or the new one, whole.
The checkpoint it replaces is kept as previous.ckpt (a hard link: no copy), the fallback if
last.ckpt is ever found unloadable (a disk error, a file copied by hand, a checkpoint of an
older version of this code).
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.callbacks import Checkpoint, ModelCheckpoint
from pytorch_lightning.trainer.states import TrainerFn

from .. import signals
from ..signals import RunInterrupted
from ..store.files import atomic_write

LAST = "last.ckpt"
PREVIOUS = "previous.ckpt"
# What every checkpoint of a fit holds; without them Lightning cannot resume from it.
REQUIRED = ("state_dict", "loops", "optimizer_states")


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save into a temporary file in the checkpoint's folder, fsync, rename over the
    target. The replaced last.ckpt stays as previous.ckpt."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        path = Path(path)
        keep = (lambda: keep_previous(path)) if path.name == LAST and path.exists() else None
        atomic_write(path, lambda handle: torch.save(checkpoint, handle), binary=True, before_replace=keep)


def keep_previous(last: Path) -> None:
    """previous.ckpt := the current last.ckpt, as a hard link (atomic, no copy). Skipped where
    the file system has no hard links: then there is no fallback, only a fresh start."""
    link = last.with_name(f".{PREVIOUS}.{os.getpid()}.tmp")
    try:
        link.unlink(missing_ok=True)
        os.link(last, link)
        os.replace(link, last.with_name(PREVIOUS))
    except OSError:
        link.unlink(missing_ok=True)


def checkpoint_problem(path: Path) -> tuple[str | None, dict[str, Any] | None]:
    """Why a checkpoint cannot be resumed from (None if it can), and its contents."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # noqa: BLE001 - truncated, empty, not a zip, bad pickle: all unloadable
        text = str(error).splitlines()[0] if str(error) else type(error).__name__
        return f"{type(error).__name__}: {text[:120]}", None
    if not isinstance(state, dict):
        return f"holds a {type(state).__name__}, not a checkpoint", None
    missing = [key for key in REQUIRED if key not in state]
    if missing:
        return f"no {', '.join(missing)}", None
    return None, state


def remove_temporaries(checkpoint_dir: Path) -> None:
    """Temporary files of writes that a kill interrupted (the caller holds the run's lock)."""
    for stale in checkpoint_dir.glob(".*.tmp"):
        stale.unlink(missing_ok=True)


def resume_point(checkpoint_dir: Path, owner: bool = True) -> tuple[Path | None, dict[str, Any] | None]:
    """The newest checkpoint a run can resume from, and its contents: last.ckpt, else
    previous.ckpt, else none (a fresh start). The owner (the process holding the run's lock:
    rank 0) sets one that cannot be loaded aside as <name>.corrupt-<UTC time>, with a one-line
    warning; other ranks skip it and so reach the same choice."""
    if not checkpoint_dir.is_dir():
        return None, None
    if owner:
        remove_temporaries(checkpoint_dir)
    for name in (LAST, PREVIOUS):
        path = checkpoint_dir / name
        if not path.exists():
            continue
        problem, state = checkpoint_problem(path)
        if problem is None:
            return path, state
        if not owner:
            continue
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        aside = path.with_name(f"{name}.corrupt-{stamp}")
        os.replace(path, aside)
        fallback = "previous.ckpt" if name == LAST and (checkpoint_dir / PREVIOUS).exists() else "scratch"
        print(
            f"warning: checkpoint {path} cannot be loaded ({problem}); set aside as {aside.name}, "
            f"resuming from {fallback}",
            file=sys.stderr,
            flush=True,
        )
    return None, None


def has_checkpoint(checkpoint_dir: Path) -> bool:
    return (checkpoint_dir / LAST).exists() or (checkpoint_dir / PREVIOUS).exists()


def drop_previous(checkpoint_dir: Path) -> None:
    """Once a run's record is written its fallback checkpoint is no longer needed."""
    (checkpoint_dir / PREVIOUS).unlink(missing_ok=True)


class EpochEndCheckpoint(Checkpoint):
    """last.ckpt at the end of every epoch, after its validation and the divergence check
    (a Checkpoint callback: Lightning runs it after the LightningModule's epoch-end hook).
    ModelCheckpoint with a time interval saves only every so often, so without this the
    final state of a run was never saved: a kill before its record retrained the tail of the
    last epoch instead of validating once more."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trainer.save_checkpoint(self.path)


# Under DDP, the batches between two agreements on a stop signal (an all-reduce and a host sync
# each) and between two looks at the checkpoint clock (ModelCheckpoint broadcasts rank 0's):
# a stop then waits up to this many batches, never a collective per batch.
AGREE_EVERY = 20


def agreed(trainer: pl.Trainer, batch_idx: int | None = None) -> str | None:
    """Whether any rank of a run received a stop signal: all ranks must stop at the same
    batch (a checkpoint is a collective). One process: this process's signal, at every batch.
    DDP: one tiny all-reduce, at every AGREE_EVERY-th batch (`batch_idx`; None: now); None
    in between, on every rank alike."""
    mine = signals.received()
    if trainer.world_size > 1:
        if batch_idx is not None and (batch_idx + 1) % AGREE_EVERY:
            return None
        anyone = trainer.strategy.reduce_boolean_decision(mine is not None, all=False)
        return (mine or "a signal to another rank") if anyone else None
    return mine


def at_step_boundary(trainer: pl.Trainer) -> bool:
    """Is the optimizer step of this batch done (no gradients being accumulated)? A checkpoint
    holds no gradients: one saved in the middle of accumulate_grad_batches lost them."""
    return not trainer.fit_loop.epoch_loop._should_accumulate()


def validation_follows(trainer: pl.Trainer, batch_idx: int) -> bool:
    """Does a validation run right after this training batch? A checkpoint saved at such a
    batch end resumes past that validation (Lightning skips it), and its point on the curve
    is lost: the checkpoint waits until after the validation."""
    if not trainer.enable_validation:
        return False
    if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
        return (trainer.current_epoch + 1) % (trainer.check_val_every_n_epoch or 1) == 0
    every = trainer.val_check_batch
    return isinstance(every, int) and every > 0 and (batch_idx + 1) % every == 0


class PatientModelCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose time-based save skips a batch that a validation follows (the
    next batch end saves instead, or the end-of-epoch checkpoint)."""

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.world_size > 1 and (batch_idx + 1) % AGREE_EVERY:
            return  # under DDP the clock is read (rank 0's broadcast) every AGREE_EVERY batches
        if not validation_follows(trainer, batch_idx) and at_step_boundary(trainer):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


class GracefulStop(pl.Callback):
    """Turn a stop signal into a checkpoint at the next batch boundary (a consistent state:
    the optimizer step is complete) followed by RunInterrupted. A signal that arrives at the
    batch before a validation lets that validation finish and checkpoints after it, so its
    point on the curve is kept; one that arrives during a validation stops it at once, and
    the last checkpoint stays the resume point."""

    def __init__(self, checkpoint_path: Any, run_name: str) -> None:
        self.checkpoint_path = checkpoint_path
        self.run_name = run_name
        self._finish_validation = False
        self._pending: str | None = None  # agreed in the middle of gradient accumulation

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        signals.reassert()
        procs = getattr(trainer.strategy.launcher, "procs", None)
        if procs:
            signals.forward_to([proc.pid for proc in procs])

    def _stop(self, trainer: pl.Trainer, name: str) -> None:
        trainer.save_checkpoint(self.checkpoint_path)
        raise RunInterrupted(name, f"a checkpoint of {self.run_name} was saved")

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        name = self._pending or agreed(trainer, batch_idx)
        self._pending = None
        if name and not at_step_boundary(trainer):
            self._pending = name  # stop at the end of this optimizer step's batches
            return
        if name and not validation_follows(trainer, batch_idx):
            # Lightning logs this batch's training row after the batch-end hooks, which the
            # interruption skips: log it now, so that the curve keeps it (train/csv_log.py).
            update = getattr(trainer._logger_connector, "update_train_step_metrics", None)
            if update is not None:
                update()
            self._stop(trainer, name)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        signals.reassert()
        in_fit = trainer.state.fn == TrainerFn.FITTING
        self._finish_validation = in_fit and agreed(trainer) is not None

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._finish_validation:
            return
        name = agreed(trainer, batch_idx)
        if name:
            raise RunInterrupted(name, f"{self.run_name} stopped in validation; its last checkpoint is kept")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._finish_validation:
            self._finish_validation = False
            self._stop(trainer, agreed(trainer) or "interrupted")
