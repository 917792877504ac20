"""Image-folder loading that resumes exactly, as the in-memory path does.

A plain shuffled DataLoader restarts its epoch order on resume, so an ImageNet job pre-empted
mid-epoch trained on another sequence and repeated data; and per-sample augmentation drew
from each worker's RNG, whose state depends on which worker had loaded what before. Here:
- `ResumableSampler`: the epoch's order is a function of (seed, epoch); each DDP rank takes
  its own contiguous share of it; how many batches of the epoch were trained on is its
  state (saved in every checkpoint), and a resumed run continues with the next batch;
- `SeededSamples`: every sample is augmented under torch's RNG seeded from (seed, epoch,
  index), so its crop, flip, RandAugment and erasing are the same whichever worker (or how
  many, num_workers is not part of a run's identity) loads it;
- `ShardSampler`: validation in order, each rank its share (no sample twice).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .data import run_seed


class ResumableSampler(Sampler):
    """Yields (index, epoch) pairs, the epoch's permutation from `start_batch` on."""

    def __init__(self, size: int, batch_size: int, seed: int, shard: tuple[int, int] = (0, 1)) -> None:
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.rank, self.world = shard
        self.epoch = 0
        self.start_batch = 0
        self.consumed = 0  # batches of this epoch trained on (DeterministicResume keeps it)

    def _indices(self) -> torch.Tensor:
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(run_seed(self.seed, self.epoch)))
        per_rank = self.size // self.world
        return order[self.rank * per_rank: (self.rank + 1) * per_rank]

    def __len__(self) -> int:
        return self.size // self.world  # the whole epoch: Lightning counts batches from the checkpoint

    def __iter__(self) -> Iterator[tuple[int, int]]:
        start, self.start_batch = self.start_batch, 0
        epoch = self.epoch
        for index in self._indices()[start * self.batch_size:].tolist():
            yield index, epoch

    def set_epoch(self, epoch: int) -> None:
        """Lightning calls it before every epoch, resumed ones too."""
        if epoch != self.epoch:
            self.start_batch = 0
        self.epoch = epoch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "consumed": self.consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch = state["epoch"]
        self.start_batch = self.consumed = state["consumed"]
        if self.consumed >= len(self) // self.batch_size:
            # Saved at the end of an epoch: the next one starts. Said here, not left to
            # set_epoch: with workers, the DataLoader draws its first indices as soon as its
            # iterator exists, which Lightning creates before it calls set_epoch.
            self.epoch, self.start_batch, self.consumed = self.epoch + 1, 0, 0


class ShardSampler(Sampler):
    """Indices in order, this rank's contiguous share (the last rank's may be shorter)."""

    def __init__(self, size: int, shard: tuple[int, int] = (0, 1)) -> None:
        rank, world = shard
        per_rank = -(-size // world)
        self.indices = list(range(rank * per_rank, min((rank + 1) * per_rank, size)))

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)


class SeededSamples(Dataset):
    """A dataset whose sample (index, epoch) is transformed under torch's RNG seeded from
    (seed, epoch, index); the caller's RNG state is left as it was."""

    def __init__(self, dataset: Any, transform: Callable[[Any], Any], seed: int) -> None:
        self.dataset, self.transform, self.seed = dataset, transform, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> tuple[Any, int]:
        index, epoch = key
        image, label = self.dataset[index]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(run_seed(self.seed, epoch, index, 3))
            return self.transform(image), label


class ResumableLoader(DataLoader):
    """A DataLoader whose position is its sampler's state: Lightning saves it in checkpoints
    (it has state_dict/load_state_dict) and DeterministicResume sets `consumed`."""

    def state_dict(self) -> dict[str, int]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.sampler.load_state_dict(state)

    @property
    def consumed(self) -> int:
        return self.sampler.consumed

    @consumed.setter
    def consumed(self, value: int) -> None:
        self.sampler.consumed = value
