"""Data sets as LightningDataModules.

Small data sets (Fashion-MNIST, CIFAR, synthetic) live in memory as uint8 tensors and are
augmented a whole batch at a time, so the CPU trains the model instead of running a
per-sample DataLoader. Batch order and augmentation are a function of (seed, epoch, batch),
so an interrupted run resumes with exactly the batches it would have seen.
Image folders (Imagenette, ImageNet) use torchvision's datasets, transforms and DataLoader.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchvision import datasets
from torchvision.transforms import v2

from .config import TrainConfig
from .datasets import DataError, dataset_info, load_splits

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def run_seed(*parts: int) -> int:
    """A 63-bit seed derived from integers (seed, epoch, batch, ...)."""
    value = 0x9E3779B97F4A7C15
    for part in parts:
        value = (value ^ (int(part) + 0x632BE59BD9B4E019 + (value << 6) + (value >> 2))) & (2**63 - 1)
    return value


# ------------------------------------------------------------------------- in-memory batches

class BatchAugment:
    """Augment a uint8 batch in one go: random crop after zero padding and horizontal flip per
    sample (vectorised); RandAugment and Random Erasing per chunk of 16 samples (torchvision v2
    draws one set of parameters per call)."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.padding = cfg.crop_padding
        self.hflip = cfg.hflip
        self.randaugment = (v2.RandAugment(cfg.randaugment_ops, cfg.randaugment_magnitude)
                            if cfg.randaugment_ops else None)
        self.erasing = v2.RandomErasing(cfg.random_erasing) if cfg.random_erasing else None

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, _, h, w = images.shape
        if self.padding:
            p = self.padding
            padded = F.pad(images, (p, p, p, p))
            dy = torch.randint(0, 2 * p + 1, (n,), generator=generator)
            dx = torch.randint(0, 2 * p + 1, (n,), generator=generator)
            rows = (dy[:, None] + torch.arange(h))[:, None, :, None].expand(n, images.shape[1], h, w + 2 * p)
            images = padded.gather(2, rows)
            cols = (dx[:, None] + torch.arange(w))[:, None, None, :].expand(n, images.shape[1], h, w)
            images = images.gather(3, cols)
        if self.hflip:
            flip = torch.rand(n, generator=generator) < 0.5
            images = torch.where(flip[:, None, None, None], images.flip(3), images)
        if self.randaugment is not None:
            images = torch.cat([self.randaugment(chunk) for chunk in images.split(16)])
        return images

    def after_normalize(self, images: torch.Tensor) -> torch.Tensor:
        if self.erasing is None:
            return images
        return torch.cat([self.erasing(chunk) for chunk in images.split(16)])


class _EpochSetter:
    """Lightning calls `loader.sampler.set_epoch(epoch)` before every epoch, resumed ones too."""

    def __init__(self, loader: InMemoryBatches) -> None:
        self.loader = loader

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.loader.epoch:
            self.loader.start_batch = 0
        self.loader.epoch = epoch


class InMemoryBatches:
    """An iterable of (images, labels) batches over uint8 tensors held in memory.

    Stateful for Lightning: `state_dict` holds how many batches of the epoch were trained on
    (`consumed`, kept up to date by the `DeterministicResume` callback), so a run resumed from
    a mid-epoch checkpoint continues with the next batch."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, *, train: bool,
                 seed: int, resolution: int, mean: torch.Tensor, std: torch.Tensor,
                 augment: BatchAugment | None = None, channels_last: bool = True,
                 shard: tuple[int, int] = (0, 1)) -> None:
        self.images, self.labels = images, labels
        self.batch_size, self.train, self.seed = batch_size, train, seed
        self.resolution = resolution
        self.mean, self.std = mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)
        self.augment = augment
        self.channels_last = channels_last
        self.rank, self.world = shard
        self.epoch = 0
        self.start_batch = 0
        self.consumed = 0
        self.sampler = _EpochSetter(self)
        self.batch_sampler = None  # Lightning inspects DataLoader-like attributes

    def _indices(self) -> torch.Tensor:
        n = len(self.labels)
        if self.train:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(run_seed(self.seed, self.epoch)))
        else:
            order = torch.arange(n)
        per_rank = n // self.world if self.train else -(-n // self.world)
        return order[self.rank * per_rank: (self.rank + 1) * per_rank]

    def __len__(self) -> int:
        n = len(self._indices())
        return n // self.batch_size if self.train else -(-n // self.batch_size)

    def _prepare(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if images.shape[-1] != self.resolution:
            # Fashion-MNIST's 28x28 is zero-padded to 32 (as LeNet did); other sizes are resized.
            if self.resolution - images.shape[-1] == 4:
                images = F.pad(images, (2, 2, 2, 2))
            else:
                images = F.interpolate(images.float(), size=self.resolution, mode="bilinear",
                                       antialias=True).round().clamp(0, 255).to(torch.uint8)
        if self.augment is not None and generator is not None:
            images = self.augment(images, generator)
        x = (images.float() / 255.0 - self.mean) / self.std
        if self.augment is not None and generator is not None:
            x = self.augment.after_normalize(x)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        indices = self._indices()
        batches = len(self)
        start, self.start_batch = self.start_batch, 0
        for b in range(start, batches):
            chosen = indices[b * self.batch_size: (b + 1) * self.batch_size]
            generator = (torch.Generator().manual_seed(run_seed(self.seed, self.epoch, b, 1))
                         if self.train else None)
            yield self._prepare(self.images[chosen], generator), self.labels[chosen]

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "consumed": self.consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch = state["epoch"]
        self.start_batch = self.consumed = state["consumed"]


def curve_indices(size: int, curve_images: int | None) -> torch.Tensor | None:
    """The validation images of the checks before a run's last (TrainConfig.curve_val_images):
    the first N of a fixed permutation, the same for every seed and step; None: all of them."""
    if curve_images is None or curve_images >= size:
        return None
    return torch.randperm(size, generator=torch.Generator().manual_seed(4322))[:curve_images].sort().values


class InMemoryDataModule(pl.LightningDataModule):
    def __init__(self, cfg: TrainConfig, seed: int, splits: dict[str, tuple[torch.Tensor, torch.Tensor]],
                 num_classes: int) -> None:
        super().__init__()
        self.cfg, self.seed, self.num_classes = cfg, seed, num_classes
        subset_generator = torch.Generator().manual_seed(4321)  # the same subset for every seed
        self.splits = {}
        for split, (images, labels) in splits.items():
            limit = cfg.train_subset if split == "train" else cfg.val_subset
            if limit is not None and limit < len(labels):
                keep = torch.randperm(len(labels), generator=subset_generator)[:limit]
                images, labels = images[keep], labels[keep]
            self.splits[split] = (images, labels)
        train_images = self.splits["train"][0]
        scaled = train_images[:10000].float() / 255.0
        self.in_chans = train_images.shape[1]
        self.mean = scaled.mean(dim=(0, 2, 3))
        self.std = scaled.std(dim=(0, 2, 3)).clamp_min(1e-3)
        self._train_loader: InMemoryBatches | None = None
        # Set by the runner from a checkpoint before fit: Lightning 2.6 creates the training
        # iterator before it restores a checkpoint's loop state, so it cannot do this itself.
        self.resume_loader_state: dict[str, int] | None = None

    @property
    def num_train(self) -> int:
        return len(self.splits["train"][1])

    @property
    def num_val(self) -> int:
        return len(self.splits["val"][1])

    def _shard(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self) -> InMemoryBatches:
        images, labels = self.splits["train"]
        self._train_loader = InMemoryBatches(
            images, labels, self.cfg.batch_size, train=True, seed=self.seed, resolution=self.cfg.resolution,
            mean=self.mean, std=self.std, augment=BatchAugment(self.cfg), channels_last=self.cfg.channels_last,
            shard=self._shard())
        if self.resume_loader_state:
            self._train_loader.load_state_dict(self.resume_loader_state)
            self.resume_loader_state = None
        return self._train_loader

    def val_dataloader(self) -> InMemoryBatches:
        """The checks during training: the whole validation set, or its curve subset."""
        images, labels = self.splits["val"]
        keep = curve_indices(len(labels), self.cfg.curve_val_images)
        return self._val_loader(images[keep], labels[keep]) if keep is not None else self._val_loader(images, labels)

    def final_val_dataloader(self) -> InMemoryBatches:
        """The run's last check: the whole validation set."""
        return self._val_loader(*self.splits["val"])

    def _val_loader(self, images: torch.Tensor, labels: torch.Tensor) -> InMemoryBatches:
        return InMemoryBatches(images, labels, max(self.cfg.batch_size, 256), train=False, seed=self.seed,
                               resolution=self.cfg.resolution, mean=self.mean, std=self.std,
                               channels_last=self.cfg.channels_last, shard=self._shard())


class ImageFolderDataModule(pl.LightningDataModule):
    """ImageNet-style folders (`train/<class>/*.JPEG`, `val/<class>/*.JPEG`) with the paper's
    per-sample augmentation in DataLoader workers. Resumes exactly, like the in-memory path:
    the batch order is a function of (seed, epoch), each sample's augmentation a function of
    (seed, epoch, index), and the position in the epoch is saved in checkpoints
    (roadmap/sampler.py). train_subset/val_subset and hflip are honoured; crop_padding does
    not apply (TrainConfig.check refuses a value other than its default)."""

    def __init__(self, cfg: TrainConfig, seed: int) -> None:
        super().__init__()
        self.cfg, self.seed = cfg, seed
        root = Path(cfg.data_dir or "")
        if not cfg.data_dir or not (root / "train").is_dir() or not (root / "val").is_dir():
            raise DataError(f"train.data_dir={cfg.data_dir!r} must be a folder with train/ and val/ "
                            "class sub-folders (ImageNet or Imagenette layout); pass --data-dir")
        r = cfg.resolution
        train_ops: list[Any] = [v2.RandomResizedCrop(r, antialias=True)]
        if cfg.hflip:
            train_ops.append(v2.RandomHorizontalFlip())
        if cfg.randaugment_ops:
            train_ops.append(v2.RandAugment(cfg.randaugment_ops, cfg.randaugment_magnitude))
        train_ops += [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
        if cfg.random_erasing:
            train_ops.append(v2.RandomErasing(cfg.random_erasing))
        val_ops = [v2.Resize(int(r / 0.875), antialias=True), v2.CenterCrop(r), v2.ToImage(),
                   v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
        self.train_transform = v2.Compose(train_ops)
        self.train_set = self._subset(datasets.ImageFolder(str(root / "train")), cfg.train_subset)
        self.val_set = self._subset(datasets.ImageFolder(str(root / "val"), v2.Compose(val_ops)), cfg.val_subset)
        self.num_classes = len(self.train_set.dataset.classes)
        self.in_chans = 3
        # Set by the runner from a checkpoint before fit (as InMemoryDataModule's).
        self.resume_loader_state: dict[str, int] | None = None

    @staticmethod
    def _subset(dataset: datasets.ImageFolder, limit: int | None) -> torch.utils.data.Subset:
        """The first `limit` images of a fixed random permutation (the same for every seed),
        as the in-memory data sets' subsets."""
        order = torch.arange(len(dataset))
        if limit is not None and limit < len(dataset):
            order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(4321))[:limit]
        return torch.utils.data.Subset(dataset, order.tolist())

    @property
    def num_train(self) -> int:
        return len(self.train_set)

    @property
    def num_val(self) -> int:
        return len(self.val_set)

    def _shard(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _loader_kwargs(self) -> dict[str, Any]:
        workers = self.cfg.num_workers
        return {"batch_size": self.cfg.batch_size, "num_workers": workers, "pin_memory": torch.cuda.is_available(),
                "persistent_workers": workers > 0}

    def train_dataloader(self) -> DataLoader:
        from .sampler import ResumableLoader, ResumableSampler, SeededSamples
        sampler = ResumableSampler(len(self.train_set), self.cfg.batch_size, self.seed, self._shard())
        if self.resume_loader_state:
            sampler.load_state_dict(self.resume_loader_state)
            self.resume_loader_state = None
        return ResumableLoader(SeededSamples(self.train_set, self.train_transform, self.seed), sampler=sampler,
                               drop_last=True, **self._loader_kwargs())

    def val_dataloader(self) -> DataLoader:
        """The checks during training: the whole validation set, or its curve subset."""
        keep = curve_indices(len(self.val_set), self.cfg.curve_val_images)
        return self._val_loader(self.val_set if keep is None else torch.utils.data.Subset(self.val_set, keep.tolist()))

    def final_val_dataloader(self) -> DataLoader:
        """The run's last check: the whole validation set."""
        return self._val_loader(self.val_set)

    def _val_loader(self, dataset: Any) -> DataLoader:
        from .sampler import ShardSampler
        return DataLoader(dataset, sampler=ShardSampler(len(dataset), self._shard()), **self._loader_kwargs())


def make_datamodule(cfg: TrainConfig, seed: int) -> InMemoryDataModule | ImageFolderDataModule:
    """The data of one run; an in-memory data set is decoded once per study (load_splits)."""
    info = dataset_info(cfg.dataset)
    if not info.in_memory:
        return ImageFolderDataModule(cfg, seed)
    return InMemoryDataModule(cfg, seed, load_splits(cfg), info.num_classes)
