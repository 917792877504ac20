"""The callbacks every run trains with: exact resumption, throughput, and a progress line
for batch jobs."""

from __future__ import annotations

import os
import time
from typing import Any

import pytorch_lightning as pl
import torch

from convnext_steps import autotune

from ..data.seeding import derive_seed


class DeterministicResume(pl.Callback):
    """Make a run a pure function of its seed, even across interruptions: the global RNG (drop
    path, Mixup/CutMix) is reseeded from (seed, epoch, batch[, rank]) before every batch, and the
    in-memory loader learns how many batches were trained on, which its checkpointed state
    records (this callback runs before ModelCheckpoint, which Lightning always puts last)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        # Under DDP each rank draws its own Mixup/CutMix and drop-path numbers, as timm and the
        # ConvNeXt code seed by rank; rank 0's are those of a one-process run (rank left out).
        rank = trainer.global_rank
        torch.manual_seed(derive_seed(self.seed, trainer.current_epoch, batch_idx, 2, *((rank,) if rank else ())))

    def on_train_batch_end(
        self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loader = trainer.train_dataloader
        if hasattr(loader, "consumed"):
            loader.consumed = batch_idx + 1

    def on_save_checkpoint(self, trainer: pl.Trainer, module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint[THREADS_KEY] = torch.get_num_threads()
        checkpoint[POINTWISE_KEY] = autotune.choices_of(module)


# CPU kernels split their sums by thread: the same run on 1 and on 2 threads differs in the last
# bits after a few steps, and a few hundred steps later in its top-1. Checkpoints note theirs.
THREADS_KEY = "torch_threads"
# The conv-or-matmul choices of the 1x1 convs (convnext_steps/autotune.py): a resume makes the
# same ones, whatever the machine's cache file says by then.
POINTWISE_KEY = "pointwise_choices"


def thread_warning(saved: dict[str, Any] | None, run_name: str) -> str | None:
    """A warning when a run resumes on another number of CPU threads than it was trained on
    (for instance --jobs 2 then --jobs 1): a valid run, but not the bits of an uninterrupted one."""
    before = (saved or {}).get(THREADS_KEY)
    now = torch.get_num_threads()
    if before is None or before == now:
        return None
    return (
        f"warning: {run_name} was trained on {before} CPU thread(s) and resumes on {now}: its numbers will "
        f"differ in the last bits from an uninterrupted run (resume with the same --jobs to keep them)"
    )


class Throughput(pl.Callback):
    """Images per second of training (batches, optimizer and data, validation excluded) and of
    the last validation pass, measured on wall-clock time, less the time the 1x1 convs spent
    measuring conv against matmul (once per shape and machine: convnext_steps/autotune.py)."""

    def __init__(self) -> None:
        self.train_images = 0
        self.train_seconds = 0.0
        self.val_images = 0
        self.val_seconds = 0.0
        self.val_total_seconds = 0.0  # every validation of the run (this process's share of it)
        self._batch_start = 0.0
        self._last_end: float | None = None
        self._val_start = 0.0
        self._measuring = self._val_measuring = 0.0

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        now = time.perf_counter()
        # Time between batches (data preparation) counts, time in validation does not.
        self._batch_start = self._last_end if self._last_end is not None else now
        self._measuring = autotune.measuring_seconds()

    def on_train_batch_end(
        self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._last_end = time.perf_counter()
        self.train_seconds += self._last_end - self._batch_start - (autotune.measuring_seconds() - self._measuring)
        self.train_images += len(batch[1]) * trainer.world_size

    def on_validation_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._val_start = time.perf_counter()
        self._val_measuring = autotune.measuring_seconds()
        self.val_images = 0

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self.val_images += len(batch[1]) * trainer.world_size

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.val_seconds = time.perf_counter() - self._val_start - (autotune.measuring_seconds() - self._val_measuring)
        self.val_total_seconds += self.val_seconds
        self._last_end = None

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._last_end = None

    @property
    def train_img_s(self) -> float:
        return self.train_images / self.train_seconds if self.train_seconds else float("nan")

    @property
    def eval_img_s(self) -> float:
        return self.val_images / self.val_seconds if self.val_seconds else float("nan")


class ProgressLine(pl.Callback):
    """One line per validation check, for logs of batch jobs (no progress bar there):
    `  step 0 resnet50 seed 0 | epoch 1.00/1 | top-1 82.15% | 3929 img/s`."""

    def __init__(self, step_index: int | None, slug: str, seed: int, throughput: Any) -> None:
        job = os.environ.get("ROADMAP_JOB")  # one of several jobs (--jobs): its lines say which
        self.label = (
            f"[job {job}] " if job else ""
        ) + f"step {'' if step_index is None else f'{step_index} '}{slug} seed {seed}"
        self.throughput = throughput  # callbacks.Throughput: training img/s so far
        self.batches = 0

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.batches = 0

    def on_train_batch_end(
        self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.batches = batch_idx + 1

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        top1 = trainer.callback_metrics.get("val_top1")
        total = trainer.num_training_batches
        epoch = trainer.current_epoch + (self.batches / total if total and total != float("inf") else 0.0)
        img_s = self.throughput.train_img_s
        print(
            f"  {self.label} | epoch {epoch:.2f}/{trainer.max_epochs} | top-1 {float(top1):.2f}% | {img_s:.0f} img/s"
            if top1 is not None
            else f"  {self.label} | epoch {epoch:.2f}/{trainer.max_epochs} | {img_s:.0f} img/s",
            flush=True,
        )
