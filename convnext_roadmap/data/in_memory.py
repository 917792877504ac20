"""In-memory data sets (Fashion-MNIST, CIFAR, synthetic) as a LightningDataModule.

They live in memory as uint8 tensors and are augmented a whole batch at a time, so the CPU
trains the model instead of running a per-sample DataLoader. Batch order and augmentation
are a function of (seed, epoch, batch), so an interrupted run resumes with exactly the
batches it would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from .seeding import derive_seed

if TYPE_CHECKING:
    from ..config.schema import TrainConfig

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
            order = torch.randperm(n, generator=torch.Generator().manual_seed(derive_seed(self.seed, self.epoch)))
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
            generator = (torch.Generator().manual_seed(derive_seed(self.seed, self.epoch, b, 1))
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
