"""The data of one run, whichever kind of data set it is."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytorch_lightning as pl

from .image_folder import ImageFolderDataModule
from .in_memory import InMemoryDataModule
from .registry import dataset_info, load_splits

if TYPE_CHECKING:
    from ..config.schema import TrainConfig


def make_datamodule(cfg: TrainConfig, seed: int) -> pl.LightningDataModule:
    """The data of one run; an in-memory data set is decoded once per study (load_splits)."""
    info = dataset_info(cfg.dataset)
    if not info.in_memory:
        return ImageFolderDataModule(cfg, seed)
    return InMemoryDataModule(cfg, seed, load_splits(cfg), info.num_classes)
