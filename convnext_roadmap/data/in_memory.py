"""In-memory data sets (Fashion-MNIST, CIFAR, synthetic) as a LightningDataModule.

They live in memory as uint8 tensors and are augmented a whole batch at a time, so the CPU
trains the model instead of running a per-sample DataLoader. Batch order and augmentation
are a function of (seed, epoch, batch), so an interrupted run resumes with exactly the
batches it would have seen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from .recipe_augment import PixelRandomErasing, TimmRandAugment
from .seeding import derive_seed

if TYPE_CHECKING:
    from ..config.schema import TrainConfig

# ------------------------------------------------------------------------- in-memory batches


class BatchAugment:
    """Augment a uint8 batch in one go: random crop after zero padding and horizontal flip per
    sample (vectorised); torchvision's RandAugment and Random Erasing per chunk of
    `augment_chunk` samples (16 by default: torchvision v2 draws one set of parameters per
    call; 1: per sample); timm's RandAugment and pixel erasing (data/recipe_augment.py) per
    sample, from the batch's generator."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.padding = cfg.crop_padding
        self.hflip = cfg.hflip
        self.chunk = cfg.augment_chunk
        self.randaugment: Any = None
        self.timm_randaugment = None
        if cfg.randaugment_ops and cfg.randaugment_impl == "timm":
            self.timm_randaugment = TimmRandAugment(
                cfg.randaugment_ops,
                cfg.randaugment_magnitude,
                cfg.randaugment_magnitude_std,
                interpolation=cfg.interpolation,
            )
        elif cfg.randaugment_ops:
            self.randaugment = v2.RandAugment(cfg.randaugment_ops, cfg.randaugment_magnitude)
        self.erasing: Any = None
        self.pixel_erasing = None
        if cfg.random_erasing and cfg.random_erasing_mode == "pixel":
            self.pixel_erasing = PixelRandomErasing(cfg.random_erasing, "pixel")
        elif cfg.random_erasing:
            self.erasing = v2.RandomErasing(cfg.random_erasing)
        self._generator: torch.Generator | None = None

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
            images = torch.cat([self.randaugment(chunk) for chunk in images.split(self.chunk)])
        if self.timm_randaugment is not None:
            images = torch.stack([self.timm_randaugment(image, generator) for image in images])
        self._generator = generator  # the batch's erasing draws follow its other draws
        return images

    def after_normalize(self, images: torch.Tensor) -> torch.Tensor:
        if self.pixel_erasing is not None:
            for image in images:
                self.pixel_erasing(image, self._generator)
            return images
        if self.erasing is None:
            return images
        return torch.cat([self.erasing(chunk) for chunk in images.split(self.chunk)])


def even_batch_count(size: int, world: int, batch_size: int) -> int:
    """Validation batches of every rank under DDP: those of the largest shard."""
    largest = -(-size // world)
    return -(-largest // batch_size)


def even_shard(size: int, rank: int, world: int) -> torch.Tensor:
    """This rank's contiguous share of `size` validation images, the shares differing by at
    most one image (the first size % world ranks take one more)."""
    base, extra = divmod(size, world)
    start = rank * base + min(rank, extra)
    return torch.arange(start, start + base + (rank < extra))


def prefetched(make: Callable[[torch.Tensor, int], Any], batches: list[torch.Tensor], start: int) -> Iterator[Any]:
    """make(batches[b], b) for b from `start` on, the next one made in a thread while the
    caller trains on this one (torch's ops release the GIL). The batches are the same as
    without: each one's draws come from its own generator."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-prefetch") as pool:
        pending = pool.submit(make, batches[start], start) if start < len(batches) else None
        for b in range(start, len(batches)):
            batch = pending.result()
            pending = pool.submit(make, batches[b + 1], b + 1) if b + 1 < len(batches) else None
            yield batch


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

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        *,
        train: bool,
        seed: int,
        resolution: int,
        mean: torch.Tensor,
        std: torch.Tensor,
        augment: BatchAugment | None = None,
        channels_last: bool = True,
        shard: tuple[int, int] = (0, 1),
        interpolation: str = "bilinear",
        prefetch: bool = False,
    ) -> None:
        self.images, self.labels = images, labels
        self.batch_size, self.train, self.seed = batch_size, train, seed
        self.resolution = resolution
        self.mean, self.std = mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)
        self.augment = augment
        self.channels_last = channels_last
        self.rank, self.world = shard
        self.interpolation = interpolation
        self.prefetch = prefetch  # a CUDA run: the next batch is prepared (and pinned) during this one's step
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
        if not self.train and self.world > 1:
            return even_shard(n, self.rank, self.world)
        per_rank = n // self.world if self.train else -(-n // self.world)
        return order[self.rank * per_rank : (self.rank + 1) * per_rank]

    def __len__(self) -> int:
        if not self.train and self.world > 1:
            return even_batch_count(len(self.labels), self.world, self.batch_size)
        n = len(self._indices())
        return n // self.batch_size if self.train else -(-n // self.batch_size)

    def _batches(self, indices: torch.Tensor) -> list[torch.Tensor]:
        """The batches of this rank's indices: of batch_size (the last may be short); validation
        under DDP: exactly len(self) batches on every rank (a rank with fewer batches than the
        others left them waiting in a collective), each of near-equal size."""
        if not self.train and self.world > 1:
            return list(torch.tensor_split(indices, len(self)))
        return [indices[b * self.batch_size : (b + 1) * self.batch_size] for b in range(len(self))]

    def _prepare(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if images.shape[-1] != self.resolution:
            # Fashion-MNIST's 28x28 is zero-padded to 32 (as LeNet did); other sizes are resized.
            if self.resolution - images.shape[-1] == 4:
                images = F.pad(images, (2, 2, 2, 2))
            else:
                images = (
                    F.interpolate(images.float(), size=self.resolution, mode=self.interpolation, antialias=True)
                    .round()
                    .clamp(0, 255)
                    .to(torch.uint8)
                )
        if self.augment is not None and generator is not None:
            images = self.augment(images, generator)
        x = (images.float() / 255.0 - self.mean) / self.std
        if self.augment is not None and generator is not None:
            x = self.augment.after_normalize(x)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _batch(self, chosen: torch.Tensor, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        # rank 0's draws are those of a one-process run; every other rank draws its own
        parts = (self.seed, self.epoch, b, 1) + ((self.rank,) if self.rank else ())
        generator = torch.Generator().manual_seed(derive_seed(*parts)) if self.train else None
        images, labels = self._prepare(self.images[chosen], generator), self.labels[chosen]
        return (images.pin_memory(), labels.pin_memory()) if self.prefetch else (images, labels)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        batches = self._batches(self._indices())
        start, self.start_batch = self.start_batch, 0
        if self.prefetch:
            yield from prefetched(self._batch, batches, start)
            return
        for b in range(start, len(batches)):
            yield self._batch(batches[b], b)

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
    def __init__(
        self, cfg: TrainConfig, seed: int, splits: dict[str, tuple[torch.Tensor, torch.Tensor]], num_classes: int
    ) -> None:
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
        # A CUDA run (set by the runner): batches pinned, each prepared during the previous one's step
        self.prefetch = False

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
        augment = BatchAugment(self.cfg)
        self._train_loader = InMemoryBatches(
            images,
            labels,
            self.cfg.batch_size,
            train=True,
            seed=self.seed,
            resolution=self.cfg.resolution,
            mean=self.mean,
            std=self.std,
            augment=augment,
            channels_last=self.cfg.channels_last,
            shard=self._shard(),
            interpolation=self.cfg.interpolation,
            # torchvision's transforms draw from the global RNG: never from a second thread
            prefetch=self.prefetch and augment.randaugment is None and augment.erasing is None,
        )
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
        return InMemoryBatches(
            images,
            labels,
            max(self.cfg.batch_size, 256),
            train=False,
            seed=self.seed,
            resolution=self.cfg.resolution,
            mean=self.mean,
            std=self.std,
            channels_last=self.cfg.channels_last,
            shard=self._shard(),
            interpolation=self.cfg.interpolation,
            prefetch=self.prefetch,
        )
