"""Image folders (Imagenette, ImageNet: `train/<class>/*`, `val/<class>/*`) as a
LightningDataModule, with torchvision's datasets, transforms and DataLoader, resuming
exactly as the in-memory path does.

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

import functools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytorch_lightning as pl
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision import datasets
from torchvision.datasets.folder import IMG_EXTENSIONS, default_loader, has_file_allowed_extension
from torchvision.transforms import v2

from ..errors import DataError
from ..store.files import atomic_write_text
from .in_memory import curve_indices, even_batch_count, even_shard
from .recipe_augment import PixelRandomErasing, TimmRandAugment
from .registry import CACHE_DIR
from .seeding import derive_seed

if TYPE_CHECKING:
    from ..config.schema import TrainConfig

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class ResumableSampler(Sampler):
    """Yields (index, epoch) pairs, the epoch's permutation from `start_batch` on."""

    def __init__(self, size: int, batch_size: int, seed: int, shard: tuple[int, int] = (0, 1)) -> None:
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.rank, self.world = shard
        self.epoch = 0
        self.start_batch = 0
        self.consumed = 0  # batches of this epoch trained on (DeterministicResume keeps it)

    def _indices(self) -> torch.Tensor:
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(derive_seed(self.seed, self.epoch)))
        per_rank = self.size // self.world
        return order[self.rank * per_rank : (self.rank + 1) * per_rank]

    def __len__(self) -> int:
        return self.size // self.world  # the whole epoch: Lightning counts batches from the checkpoint

    def __iter__(self) -> Iterator[tuple[int, int]]:
        start, self.start_batch = self.start_batch, 0
        epoch = self.epoch
        for index in self._indices()[start * self.batch_size :].tolist():
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


class EvenShardBatches(Sampler):
    """Validation under DDP: this rank's contiguous share (shares differ by one image at most),
    in the same number of batches on every rank. A rank with a batch less than the others left
    them waiting in that batch's collectives (DDP's buffer broadcast, the stop agreement)."""

    def __init__(self, size: int, shard: tuple[int, int], batch_size: int) -> None:
        rank, world = shard
        count = even_batch_count(size, world, batch_size)
        indices = even_shard(size, rank, world)
        if len(indices) < count:
            raise DataError(
                f"{size} validation images cannot be split into {count} batch(es) on each of {world} "
                "ranks: raise train.val_subset or train.batch_size, or use fewer devices"
            )
        self.batches = [chunk.tolist() for chunk in torch.tensor_split(indices, count)]

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)


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
            torch.manual_seed(derive_seed(self.seed, epoch, index, 3))
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


# ------------------------------------------------------------------------- the folder itself


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        Path(entry.path)
        for entry in os.scandir(folder)
        if entry.is_file() and has_file_allowed_extension(entry.name, IMG_EXTENSIONS)
    )


def image_problem(path: Path) -> str | None:
    """Why a file is not a readable image, or None: PIL reads its header (format and size),
    and a JPEG or PNG must end as one does (a truncated file is found here, not mid-epoch)."""
    try:
        with Image.open(path) as image:
            image_format, _ = image.format, image.size
        with open(path, "rb") as handle:
            handle.seek(max(0, os.path.getsize(path) - 1024))
            tail = handle.read()
    except (OSError, SyntaxError, ValueError) as error:  # PIL's UnidentifiedImageError is an OSError
        return str(error).splitlines()[0] if str(error) else type(error).__name__
    if image_format == "JPEG" and b"\xff\xd9" not in tail:
        return "truncated: no JPEG end marker"
    if image_format == "PNG" and b"IEND" not in tail:
        return "truncated: no PNG end chunk"
    return None


@functools.lru_cache(maxsize=8)
def check_image_folder(root: Path, check_files: bool = True) -> tuple[str, ...]:
    """The classes of an image folder, after checking what would train silently wrong: train/
    and val/ must hold the same class folders (labels are numbered by name), each with at least
    one image file, and (check_files) every image file must be readable (image_problem). Every
    problem is a one-line DataError naming the folder or file."""
    root = Path(root)
    splits = {split: root / split for split in ("train", "val")}
    for split, folder in splits.items():
        if not folder.is_dir():
            raise DataError(
                f"train.data_dir={str(root)!r} has no {split}/ folder; an image folder holds train/ and "
                "val/, each with one sub-folder of images per class (ImageNet layout); pass --data-dir"
            )
    classes = {split: sorted(e.name for e in os.scandir(folder) if e.is_dir()) for split, folder in splits.items()}
    if not classes["train"]:
        raise DataError(f"{splits['train']} has no class folders: put each class's images in train/<class>/")
    for split, other in (("val", "train"), ("train", "val")):
        missing = sorted(set(classes[other]) - set(classes[split]))
        if missing:
            raise DataError(
                f"{splits[split]} lacks class folder(s) {', '.join(missing[:5])}"
                f"{' and more' if len(missing) > 5 else ''} that {other}/ has: classes are matched by "
                f"name, so both must hold the same ones; add them to {split}/ or remove them from {other}/"
            )
    for split, folder in splits.items():
        for name in classes[split]:
            files = _image_files(folder / name)
            if not files:
                raise DataError(
                    f"{folder / name} holds no image file ({', '.join(IMG_EXTENSIONS[:4])}, ...): add "
                    "its images or remove the class from train/ and val/"
                )
            for path in files if check_files else ():
                problem = image_problem(path)
                if problem:
                    raise DataError(
                        f"{path} is not a readable image ({problem}); remove or replace it, then run "
                        "the same command again"
                    )
    return tuple(classes["train"])


def check_image_folder_once(root: Path, fingerprint: str) -> tuple[str, ...]:
    """check_image_folder, its file check done once per state of the folder: a folder whose
    fingerprint (the names and sizes of its files) has passed before is checked for its classes
    only. Reading every file's header costs minutes at ImageNet's 1.3M files on a cold cache,
    once (benchmarks/image_folder_check.py); stat()ing them, which the fingerprint does anyway,
    seconds."""
    marker = CACHE_DIR / "checked-image-folders" / f"{fingerprint}.ok"
    if marker.is_file():
        return check_image_folder(root, check_files=False)
    classes = check_image_folder(root)
    try:
        atomic_write_text(marker, f"{root}\n")
    except OSError:  # no writable cache: checked again next time
        pass
    return classes


def load_image(path: str) -> Image.Image:
    """torchvision's loader, with the file's name in the error of an unreadable image."""
    try:
        return default_loader(path)
    except (OSError, SyntaxError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DataError(
            f"{path} is not a readable image ({reason}); remove or replace it, then run the same command again"
        ) from None


class ClassFolders(datasets.ImageFolder):
    """An ImageFolder whose classes are given (train/'s, for val/ too: labels match by name)."""

    def __init__(self, root: str, classes: tuple[str, ...], transform: Any = None) -> None:
        self.given_classes = list(classes)
        super().__init__(root, transform, loader=load_image)

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        return self.given_classes, {name: i for i, name in enumerate(self.given_classes)}


class ImageFolderDataModule(pl.LightningDataModule):
    """ImageNet-style folders (`train/<class>/*.JPEG`, `val/<class>/*.JPEG`) with the paper's
    per-sample augmentation in DataLoader workers. Resumes exactly, like the in-memory path:
    the batch order is a function of (seed, epoch), each sample's augmentation a function of
    (seed, epoch, index), and the position in the epoch is saved in checkpoints
    (the samplers above). train_subset/val_subset and hflip are honoured; crop_padding does
    not apply (TrainConfig.check refuses a value other than its default)."""

    def __init__(self, cfg: TrainConfig, seed: int) -> None:
        super().__init__()
        self.cfg, self.seed = cfg, seed
        root = Path(cfg.data_dir or "")
        if not cfg.data_dir or not (root / "train").is_dir() or not (root / "val").is_dir():
            raise DataError(
                f"train.data_dir={cfg.data_dir!r} must be a folder with train/ and val/ "
                "class sub-folders (ImageNet or Imagenette layout); pass --data-dir"
            )
        r = cfg.resolution
        resize = {"bilinear": v2.InterpolationMode.BILINEAR, "bicubic": v2.InterpolationMode.BICUBIC}[cfg.interpolation]
        train_ops: list[Any] = [v2.RandomResizedCrop(r, interpolation=resize, antialias=True)]
        if cfg.hflip:
            train_ops.append(v2.RandomHorizontalFlip())
        if cfg.randaugment_ops and cfg.randaugment_impl == "timm":
            train_ops.append(
                TimmRandAugment(
                    cfg.randaugment_ops,
                    cfg.randaugment_magnitude,
                    cfg.randaugment_magnitude_std,
                    interpolation=cfg.interpolation,
                )
            )
        elif cfg.randaugment_ops:
            train_ops.append(v2.RandAugment(cfg.randaugment_ops, cfg.randaugment_magnitude))
        train_ops += [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
        if cfg.random_erasing and cfg.random_erasing_mode == "pixel":
            train_ops.append(PixelRandomErasing(cfg.random_erasing, "pixel"))
        elif cfg.random_erasing:
            train_ops.append(v2.RandomErasing(cfg.random_erasing))
        val_ops = [
            v2.Resize(int(r / 0.875), interpolation=resize, antialias=True),
            v2.CenterCrop(r),
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
        self.train_transform = v2.Compose(train_ops)
        classes = check_image_folder(root.resolve(), check_files=False)  # the runner checked the files before
        self.train_set = self._subset(ClassFolders(str(root / "train"), classes), cfg.train_subset)
        self.val_set = self._subset(ClassFolders(str(root / "val"), classes, v2.Compose(val_ops)), cfg.val_subset)
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
        return {
            "batch_size": self.cfg.batch_size,
            "num_workers": workers,
            "pin_memory": torch.cuda.is_available(),
            "persistent_workers": workers > 0,
        }

    def train_dataloader(self) -> DataLoader:
        sampler = ResumableSampler(len(self.train_set), self.cfg.batch_size, self.seed, self._shard())
        if self.resume_loader_state:
            sampler.load_state_dict(self.resume_loader_state)
            self.resume_loader_state = None
        return ResumableLoader(
            SeededSamples(self.train_set, self.train_transform, self.seed),
            sampler=sampler,
            drop_last=True,
            **self._loader_kwargs(),
        )

    def val_dataloader(self) -> DataLoader:
        """The checks during training: the whole validation set, or its curve subset."""
        keep = curve_indices(len(self.val_set), self.cfg.curve_val_images)
        return self._val_loader(self.val_set if keep is None else torch.utils.data.Subset(self.val_set, keep.tolist()))

    def final_val_dataloader(self) -> DataLoader:
        """The run's last check: the whole validation set."""
        return self._val_loader(self.val_set)

    def _val_loader(self, dataset: Any) -> DataLoader:
        rank, world = self._shard()
        if world > 1:  # every rank the same number of batches (EvenShardBatches)
            kwargs = {k: v for k, v in self._loader_kwargs().items() if k != "batch_size"}
            return DataLoader(
                dataset, batch_sampler=EvenShardBatches(len(dataset), (rank, world), self.cfg.batch_size), **kwargs
            )
        return DataLoader(dataset, sampler=ShardSampler(len(dataset), self._shard()), **self._loader_kwargs())
