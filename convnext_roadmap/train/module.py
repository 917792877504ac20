"""The LightningModule of one run: a roadmap step trained with the paper's recipe, scaled by
a `TrainConfig` (AdamW, linear warmup then cosine per optimizer step, label smoothing,
Mixup/CutMix, no weight decay on biases, norms and layer scale)."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy
from torchvision.transforms import v2

from convnext_steps import Step, build_model, get_step, spec_dict, step_from_spec
from convnext_steps.cpu_kernels import use_cpu_kernels

from ..config.schema import TrainConfig, from_dict


class DivergedError(RuntimeError):
    """The training loss became NaN or infinite."""

    def __init__(self, epoch: int, step: int) -> None:
        super().__init__(f"loss became NaN/inf in epoch {epoch} (optimizer step {step})")
        self.epoch, self.step = epoch, step


class RoadmapClassifier(pl.LightningModule):
    """One roadmap step trained with the paper's recipe, scaled by a `TrainConfig`."""

    # How often the loss is checked for NaN/inf: a host sync, so not at every step.
    FINITE_CHECK_EVERY = 20

    def __init__(
        self,
        step: Step | str,
        cfg: TrainConfig | dict[str, Any],
        num_classes: int,
        in_chans: int,
        world_size: int = 1,
        spec: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(cfg, dict):  # from a checkpoint's hyperparameters: load_from_checkpoint(path)
            cfg = from_dict(TrainConfig, cfg, "train.")
        step = step_from_spec(step, spec) if isinstance(step, str) else get_step(step)
        # Everything needed to rebuild the module, a step defined in a study included (its
        # spec; width_mult is in cfg); also what the trackers log as hyperparameters.
        self.save_hyperparameters(
            {
                "step": step.slug,
                "spec": spec_dict(step),
                "cfg": asdict(cfg),
                "num_classes": num_classes,
                "in_chans": in_chans,
                "world_size": world_size,
            }
        )
        self.cfg = cfg
        self.world_size = world_size
        self.model = use_cpu_kernels(
            build_model(
                step,
                num_classes=num_classes,
                in_chans=in_chans,
                width_mult=cfg.width_mult,
                drop_path_rate=cfg.drop_path_rate,
            )
        )
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

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Images in the network's memory layout: a DataLoader of image-folder samples collates
        NCHW, and a channels_last network would convert inside each conv (on the GPU). The
        in-memory batches are channels_last already (`contiguous` returns them as they are)."""
        if self.cfg.channels_last and isinstance(batch, (tuple, list)) and batch and batch[0].dim() == 4:
            return (batch[0].contiguous(memory_format=torch.channels_last), *batch[1:])
        return batch

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
        """Raise DivergedError if the loss was NaN/inf on this rank, or under DDP on any rank (one
        all-reduce, every FINITE_CHECK_EVERY batches: every rank raises at the same batch;
        one rank raising alone left the others waiting in the next collective)."""
        nonfinite = bool(self._nonfinite)
        trainer = self._trainer
        if trainer is not None and trainer.world_size > 1:
            nonfinite = trainer.strategy.reduce_boolean_decision(nonfinite, all=False)
        if nonfinite:
            raise DivergedError(self.current_epoch, self.global_step)

    def on_train_epoch_end(self) -> None:
        self.check_finite()

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        images, labels = batch
        logits = self(images)
        self.log("val_loss", F.cross_entropy(logits, labels), on_epoch=True, sync_dist=True, batch_size=len(labels))
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
        # the global batch of one optimizer step: per device x devices x nodes x accumulated batches
        lr = cfg.lr * cfg.batch_size * self.world_size * cfg.accumulate_grad_batches / cfg.lr_reference_batch
        groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        if cfg.optimizer == "sgd":
            optimizer = torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, fused=True)
        else:
            optimizer = torch.optim.AdamW(groups, lr=lr, betas=tuple(cfg.betas), fused=True)
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
