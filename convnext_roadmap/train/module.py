"""The LightningModule of one run (one step, one seed) and the callbacks it needs."""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy
from torchvision.transforms import v2

from convnext_steps import Step, autotune, build_model, get_step

from .config import TrainConfig, from_dict
from .data import run_seed


class DivergedError(RuntimeError):
    """The training loss became NaN or infinite."""

    def __init__(self, epoch: int, step: int) -> None:
        super().__init__(f"loss became NaN/inf in epoch {epoch} (optimizer step {step})")
        self.epoch, self.step = epoch, step


class RoadmapClassifier(pl.LightningModule):
    """One roadmap step trained with the paper's recipe, scaled by a `TrainConfig`."""

    # How often the loss is checked for NaN/inf: a host sync, so not at every step.
    FINITE_CHECK_EVERY = 20

    def __init__(self, step: Step | str, cfg: TrainConfig | dict[str, Any], num_classes: int, in_chans: int,
                 world_size: int = 1, spec: dict[str, Any] | None = None) -> None:
        super().__init__()
        from .weights import spec_of, step_from_spec
        if isinstance(cfg, dict):  # from a checkpoint's hyperparameters: load_from_checkpoint(path)
            cfg = from_dict(TrainConfig, cfg, "train.")
        step = step_from_spec(step, spec) if isinstance(step, str) else get_step(step)
        # Everything needed to rebuild the module, a step defined in a study included (its
        # spec; width_mult is in cfg); also what the trackers log as hyperparameters.
        self.save_hyperparameters({"step": step.slug, "spec": spec_of(step), "cfg": asdict(cfg),
                                   "num_classes": num_classes, "in_chans": in_chans, "world_size": world_size})
        self.cfg = cfg
        self.world_size = world_size
        self.model = build_model(step, num_classes=num_classes, in_chans=in_chans, width_mult=cfg.width_mult,
                                 drop_path_rate=cfg.drop_path_rate, layer_scale_init=cfg.layer_scale_init)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if cfg.compile:
            self.model.compile()  # in place, so state_dict keys (checkpoints, records) are unchanged
        mixers = []
        if cfg.mixup_alpha > 0:
            mixers.append(v2.MixUp(alpha=cfg.mixup_alpha, num_classes=num_classes))
        if cfg.cutmix_alpha > 0:
            mixers.append(v2.CutMix(alpha=cfg.cutmix_alpha, num_classes=num_classes))
        self.mix = v2.RandomChoice(mixers) if mixers else None
        self.val_top1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.val_top5 = MulticlassAccuracy(num_classes, top_k=min(5, num_classes), average="micro")
        self._nonfinite = torch.zeros((), dtype=torch.bool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, labels = batch
        targets: torch.Tensor = labels
        if self.mix is not None:
            images, targets = self.mix(images, labels)
        loss = F.cross_entropy(self(images), targets, label_smoothing=self.cfg.label_smoothing)
        self._nonfinite = self._nonfinite.to(loss.device) | ~torch.isfinite(loss.detach())
        if (batch_idx + 1) % self.FINITE_CHECK_EVERY == 0:
            self.check_finite()
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True)
        return loss

    def check_finite(self) -> None:
        if bool(self._nonfinite):
            raise DivergedError(self.current_epoch, self.global_step)

    def on_train_epoch_end(self) -> None:
        self.check_finite()

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        images, labels = batch
        logits = self(images)
        self.log("val_loss", F.cross_entropy(logits, labels), on_epoch=True, sync_dist=True,
                 batch_size=len(labels))
        self.val_top1.update(logits, labels)
        self.val_top5.update(logits, labels)

    def on_validation_epoch_end(self) -> None:
        self.log("val_top1", self.val_top1.compute() * 100, prog_bar=True)
        self.log("val_top5", self.val_top5.compute() * 100)
        self.val_top1.reset()
        self.val_top5.reset()

    def configure_optimizers(self) -> dict[str, Any]:
        cfg = self.cfg
        decay, no_decay = [], []
        for name, param in self.model.named_parameters():
            # No weight decay on biases, norms and layer scale (as timm / the ConvNeXt code).
            (no_decay if param.ndim <= 1 or name.endswith("gamma") else decay).append(param)
        lr = cfg.lr * cfg.batch_size * self.world_size / cfg.lr_reference_batch
        groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        if cfg.optimizer == "sgd":
            optimizer = torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, fused=True)
        else:
            optimizer = torch.optim.AdamW(groups, lr=lr, betas=tuple(cfg.betas), fused=True)  # fused: ~4x faster
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        warmup = int(round(total * cfg.warmup_epochs / cfg.epochs))
        floor = min(cfg.min_lr / lr, 1.0)

        def factor(step: int) -> float:
            """Linear warmup, then cosine decay to min_lr (per optimizer step)."""
            if step < warmup:
                return (step + 1) / warmup
            progress = (step - warmup) / max(total - warmup, 1)
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class DeterministicResume(pl.Callback):
    """Make a run a pure function of its seed, even across interruptions: the global RNG (drop
    path, Mixup/CutMix) is reseeded from (seed, epoch, batch) before every batch, and the
    in-memory loader learns how many batches were trained on, which its checkpointed state
    records (this callback runs before ModelCheckpoint, which Lightning always puts last)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        torch.manual_seed(run_seed(self.seed, trainer.current_epoch, batch_idx, 2))

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
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
    return (f"warning: {run_name} was trained on {before} CPU thread(s) and resumes on {now}: its numbers will "
            f"differ in the last bits from an uninterrupted run (resume with the same --jobs to keep them)")


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

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._last_end = time.perf_counter()
        self.train_seconds += self._last_end - self._batch_start - (autotune.measuring_seconds() - self._measuring)
        self.train_images += len(batch[1]) * trainer.world_size

    def on_validation_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._val_start = time.perf_counter()
        self._val_measuring = autotune.measuring_seconds()
        self.val_images = 0

    def on_validation_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
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
