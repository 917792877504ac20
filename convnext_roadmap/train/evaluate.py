"""A finished run's saved weights, evaluated again on its validation set with the data
pipeline, precision and thread count it trained with."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from convnext_steps import autotune

from ..data.loading import make_datamodule
from ..store.lookup import find_record
from .module import RoadmapClassifier
from .run import quiet_lightning
from .weights import run_weights, trained_choices


def evaluate_run(study_dir: Path, step: str | int, seed: int, budget: int | None = None) -> dict[str, Any]:
    """Rebuild a finished run's model, load its weights and evaluate it on the study's
    validation set with the data pipeline and precision it trained with."""
    record = find_record(study_dir, step, seed, budget)
    cfg, state = run_weights(study_dir, record)
    # One process, no compiling: neither changes the numbers (see config.result_relevant).
    cfg = replace(cfg, compile=False, devices="1", num_nodes=1, strategy="auto")
    quiet_lightning()
    datamodule = make_datamodule(cfg, record.seed)
    module = RoadmapClassifier(
        record.step,
        cfg,
        datamodule.num_classes,
        datamodule.in_chans,
        world_size=record.world_size or 1,
        spec=record.spec,
    )
    module.model.load_state_dict(state)
    autotune.use_choices(module.model, trained_choices(record))  # the 1x1 convs' paths of its training
    precision = record.precision or "32-true"
    trainer = pl.Trainer(
        accelerator=cfg.accelerator,
        devices=1,
        num_nodes=1,
        precision=precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(record.threads or threads)  # its thread count: its sums, its keys
    try:
        metrics = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
    finally:
        torch.set_num_threads(threads)
    return {
        "step": record.step,
        "seed": record.seed,
        "precision": precision,
        "val_images": datamodule.num_val,
        "top1": float(metrics["val_top1"]),
        "top5": float(metrics["val_top5"]),
        "val_loss": float(metrics["val_loss"]),
        "record_top1": record.top1,
        "record_top5": record.top5,
    }
