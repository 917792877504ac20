"""A run's CSV log (Lightning's CSVLogger metrics.csv) that survives resumption.

Lightning's CSVLogger deletes metrics.csv when it starts in a folder that has one, so a
resumed run lost every row logged before its interruption (its curve began at the resume),
and it wrote rows only every 100 steps, so a kill lost the rows since. Here:
- every row is written as it is logged, and a header change rewrites the file atomically;
- each checkpoint records how many rows the run had logged (`csv_rows`): a run resumed from
  it keeps those rows and drops the ones logged after it, which it logs again (identically:
  the resumed run is exact). The row Lightning logs just after a checkpoint and a resumed
  run does not log again is kept as well: the training row of the checkpoint's own batch
  (a batch-end checkpoint), the epoch's training row (an end-of-epoch checkpoint).
A resumed epoch's train_loss_epoch averages only the batches trained after the resume
(Lightning does not checkpoint its epoch accumulators); every other row is the same as an
uninterrupted run's.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from lightning_fabric.loggers.logger import rank_zero_experiment
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter

from ..store.files import atomic_write_text


class KeepingWriter(ExperimentWriter):
    """Lightning's writer, keeping `keep` rows of an earlier attempt (None: a fresh run)."""

    def __init__(self, log_dir: str, keep: tuple[int, int | None, str] | None) -> None:
        self.keep = keep
        self.rows = 0
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        path = Path(self.metrics_file_path)
        if not path.is_file():
            return
        if not self.keep:
            path.unlink()  # a fresh run: an earlier attempt's rows are not its own
            return
        count, step, suffix = self.keep
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            header = list(reader.fieldnames or [])
            rows = [row for row in reader if None not in row and None not in row.values()]  # whole rows only
        kept = rows[:count]
        if step is not None and len(rows) > count and is_training_row(rows[count], step, suffix):
            kept.append(rows[count])
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\r\n")
        writer.writeheader()
        writer.writerows(kept)
        atomic_write_text(path, buffer.getvalue())
        self.metrics_keys = sorted(header)
        self.rows = len(kept)

    def save(self) -> None:
        logged = len(self.metrics)
        super().save()
        self.rows += logged

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        with open(self.metrics_file_path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=fieldnames, lineterminator="\r\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(Path(self.metrics_file_path), buffer.getvalue())


def is_training_row(row: dict[str, str], step: int, suffix: str) -> bool:
    """Lightning's per-step (suffix "_step") or per-epoch ("_epoch") training row at `step`."""
    if row.get("step") != str(step):
        return False
    filled = [key for key, value in row.items() if value not in ("", None) and key not in ("epoch", "step")]
    return bool(filled) and all(key.endswith(suffix) for key in filled)


class ResumableCSVLogger(CSVLogger):
    """CSVLogger that writes each row as it is logged and, when resuming, keeps the rows the
    checkpoint had seen (`keep`: from checkpoint_rows)."""

    def __init__(self, save_dir: Path, name: str, version: str, keep: tuple[int, int | None, str] | None) -> None:
        super().__init__(save_dir, name=name, version=version, flush_logs_every_n_steps=1)
        self._keep = keep

    @property
    @rank_zero_experiment
    def experiment(self) -> KeepingWriter:
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = KeepingWriter(self.log_dir, self._keep)
        return self._experiment


class CurveKeeper(pl.Callback):
    """Stores in every checkpoint how many CSV rows its run had logged, and which training row
    is still to come (its step and kind) when the checkpoint is saved at the end of a batch
    or of an epoch. It must come first among the callbacks."""

    def __init__(self) -> None:
        self._pending: tuple[int | None, str] = (None, "")

    @staticmethod
    def _steps(trainer: pl.Trainer) -> int:
        return getattr(trainer.fit_loop.epoch_loop, "_batches_that_stepped", trainer.global_step)

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self._pending = (self._steps(trainer), "_step")  # not yet incremented for this batch

    def on_train_epoch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self._pending = (self._steps(trainer) - 1, "_epoch")  # logged at the epoch's last step

    def on_train_batch_start(self, *args: Any) -> None:
        self._pending = (None, "")

    on_validation_start = on_train_end = on_train_batch_start

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        writer = _writer(trainer)
        if writer is None:
            return
        for logger in trainer.loggers:
            logger.save()
        checkpoint["csv_rows"] = (writer.rows, *self._pending)


def _writer(trainer: pl.Trainer) -> KeepingWriter | None:
    for logger in trainer.loggers:
        if isinstance(logger, ResumableCSVLogger) and trainer.is_global_zero:
            experiment = logger.experiment
            return experiment if isinstance(experiment, KeepingWriter) else None
    return None


def checkpoint_rows(state: dict[str, Any] | None) -> tuple[int, int | None, str] | None:
    """What a run resumed from this checkpoint keeps of its CSV log (None: a fresh start)."""
    if state is None:
        return None
    kept = state.get("csv_rows")
    if isinstance(kept, (list, tuple)) and len(kept) == 3:
        return int(kept[0]), (None if kept[1] is None else int(kept[1])), str(kept[2])
    return 0, None, ""  # a checkpoint of an older version: its rows cannot be told apart
