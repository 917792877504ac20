"""The data sets a study can train on: one registry entry per data set with its facts
(classes, channels, sizes) and its loader. Every other module asks this registry.

In-memory data sets (Fashion-MNIST, CIFAR, synthetic) load as uint8 tensors; image folders
(Imagenette, ImageNet) are read by data/image_folder.py.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torchvision import datasets

from ..errors import DataError

if TYPE_CHECKING:
    from ..config.schema import TrainConfig

Splits = dict[str, tuple[torch.Tensor, torch.Tensor]]


FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "val": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "convnext-roadmap"


# ---------------------------------------------------------------------------- reading files


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST format), gzipped or not. Not torchvision's reader
    (datasets.mnist.read_sn3_pascalvincent_tensor): it opens plain files only, and Debian's
    dataset-fashion-mnist ships them gzipped; reading those through torchvision would first
    decompress a copy of each onto disk."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
        magic = int.from_bytes(data[:4], "big")
        ndim = magic & 0xFF
        if magic >> 8 != 0x08 or ndim not in (1, 3):
            raise ValueError("bad magic number")
        shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
        array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
        return array.reshape(shape)
    except (OSError, EOFError, ValueError, zlib.error) as error:
        raise DataError(f"{path} is corrupt ({error}); delete it and reinstall or re-download Fashion-MNIST") from None


def _fashion_mnist_dirs(data_dir: str | None) -> list[Path]:
    """Where to look: a folder the user names is the only place looked in (it is used or
    refused, never silently replaced by another copy)."""
    if data_dir:
        candidates = [Path(data_dir)]
    else:
        candidates = [Path(os.environ["FASHION_MNIST_DIR"])] if os.environ.get("FASHION_MNIST_DIR") else []
        candidates.append(FASHION_MNIST_SYSTEM_DIR)
    expanded = []
    for base in candidates:  # also torchvision's layout under a root
        expanded += [base, base / "FashionMNIST" / "raw"]
    return expanded


def _find_fashion_mnist_file(directory: Path, name: str) -> Path | None:
    for candidate in (directory / name, directory / name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def load_fashion_mnist(data_dir: str | None) -> Splits:
    """Fashion-MNIST from --data-dir (only there, or torchvision's download into it), else
    $FASHION_MNIST_DIR, Debian's dataset-fashion-mnist, or torchvision's download, in that order."""
    tried = []
    for directory in _fashion_mnist_dirs(data_dir):
        found = {
            split: [_find_fashion_mnist_file(directory, n) for n in names]
            for split, names in FASHION_MNIST_FILES.items()
        }
        if all(all(paths) for paths in found.values()):
            return {
                split: (
                    torch.from_numpy(_read_idx(images).copy()).unsqueeze(1),
                    torch.from_numpy(_read_idx(labels).astype(np.int64)),
                )
                for split, (images, labels) in found.items()
            }
        tried.append(str(directory))
    root = Path(data_dir) if data_dir else CACHE_DIR
    try:
        splits = {
            split: datasets.FashionMNIST(str(root), train=split == "train", download=True) for split in ("train", "val")
        }
    except Exception as error:  # noqa: BLE001 - any download failure gets the same advice
        raise DataError(
            f"Fashion-MNIST not found (looked in {', '.join(dict.fromkeys(tried))}) and the "
            f"download into {root} failed ({type(error).__name__}); install Debian's "
            "dataset-fashion-mnist, or put its 4 .gz files in a folder and pass --data-dir"
        ) from None
    return {split: (ds.data.unsqueeze(1).clone(), ds.targets.clone()) for split, ds in splits.items()}


def load_cifar(name: str, data_dir: str | None) -> Splits:
    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    root = Path(data_dir) if data_dir else CACHE_DIR
    try:
        splits = {split: cls(str(root), train=split == "train", download=True) for split in ("train", "val")}
    except Exception as error:  # noqa: BLE001
        raise DataError(
            f"{name} is not in {root} and could not be downloaded ({type(error).__name__}); "
            f"download it with torchvision on a connected machine and pass --data-dir"
        ) from None
    return {
        split: (torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(ds.targets))
        for split, ds in splits.items()
    }


def make_synthetic(
    num_classes: int, train_size: int, val_size: int, resolution: int, seed: int = 1234
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """A learnable synthetic set: each class is a smooth random pattern plus noise. Used for
    smoke tests and first tries; it needs no download."""
    generator = torch.Generator().manual_seed(seed)
    patterns = F.interpolate(
        torch.rand(num_classes, 3, 4, 4, generator=generator), size=resolution, mode="bilinear", align_corners=False
    )

    def split(size: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.randint(0, num_classes, (size,), generator=generator)
        noise = torch.rand(size, 3, resolution, resolution, generator=generator)
        images = 0.6 * patterns[labels] + 0.4 * noise
        return (images * 255).round().to(torch.uint8), labels

    return {"train": split(train_size), "val": split(val_size)}


def load_synthetic(cfg: TrainConfig) -> Splits:
    return make_synthetic(
        DATASETS["synthetic"].num_classes, cfg.synthetic_train_size, cfg.synthetic_val_size, cfg.resolution
    )


@dataclass(frozen=True)
class DatasetInfo:
    """The facts of one data set. None: read from the data or the config (image folders,
    synthetic sizes)."""

    name: str
    description: str
    num_classes: int | None
    in_chans: int
    train_size: int | None
    in_memory: bool  # held in memory as uint8, augmented a batch at a time
    load: Callable[[TrainConfig], Splits] | None = None  # in-memory data sets only


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in [
        DatasetInfo(
            "fashion_mnist",
            "Fashion-MNIST, 28x28 grey, 60k/10k",
            10,
            1,
            60_000,
            True,
            lambda cfg: load_fashion_mnist(cfg.data_dir),
        ),
        DatasetInfo(
            "cifar10",
            "CIFAR-10, 32x32 colour, 50k/10k",
            10,
            3,
            50_000,
            True,
            lambda cfg: load_cifar("cifar10", cfg.data_dir),
        ),
        DatasetInfo(
            "cifar100",
            "CIFAR-100, 32x32 colour, 50k/10k",
            100,
            3,
            50_000,
            True,
            lambda cfg: load_cifar("cifar100", cfg.data_dir),
        ),
        DatasetInfo("synthetic", "learnable synthetic patterns, no download", 10, 3, None, True, load_synthetic),
        DatasetInfo("imagefolder", "an ImageNet-style folder: train/<class>/*, val/<class>/*", None, 3, None, False),
    ]
}


def check_splits(name: str, splits: Splits, num_classes: int) -> Splits:
    """Refuse data that would train silently wrong: images and labels of different counts,
    labels outside the classes, an empty split."""
    for split, (images, labels) in splits.items():
        if len(images) != len(labels) or len(labels) == 0:
            raise DataError(
                f"{name} {split} split has {len(images)} images and {len(labels)} labels; the "
                "files do not belong together: reinstall or re-download the data set"
            )
        if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
            raise DataError(
                f"{name} {split} labels run from {int(labels.min())} to {int(labels.max())}, "
                f"outside the {num_classes} classes: the labels file is wrong; re-download it"
            )
    return splits


_LOADED: dict[tuple, Splits] = {}
_FINGERPRINTS: dict[tuple, str] = {}


def load_splits(cfg: TrainConfig) -> Splits:
    """An in-memory data set, checked, decoded once per process and shared by a study's runs
    (the last one loaded is kept)."""
    info = dataset_info(cfg.dataset)
    key = (cfg.dataset, cfg.data_dir, cfg.synthetic_train_size, cfg.synthetic_val_size, cfg.resolution)
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = check_splits(cfg.dataset, info.load(cfg), info.num_classes)
    return _LOADED[key]


def fingerprint(cfg: TrainConfig) -> str:
    """What data a run reads, as a short checksum: of the decoded images and labels of an
    in-memory data set (the same data gives the same fingerprint, wherever its files came
    from), of the file names and sizes of an image folder. Enters every run's hash, so that
    fixed or changed data trains again, while where the data lives (data_dir) does not."""
    key = _fingerprint_key(cfg)
    if key in _FINGERPRINTS:
        return _FINGERPRINTS[key]
    digest = hashlib.sha256()
    if dataset_info(cfg.dataset).in_memory:
        for split, (images, labels) in sorted(load_splits(cfg).items()):
            digest.update(f"{split}{tuple(images.shape)}{tuple(labels.shape)}".encode())
            digest.update(images.contiguous().numpy().tobytes())
            digest.update(labels.contiguous().numpy().tobytes())
        _FINGERPRINTS[key] = digest.hexdigest()[:16]
    else:
        _FINGERPRINTS[key] = folder_fingerprint(Path(cfg.data_dir or ""))
    return _FINGERPRINTS[key]


def _fingerprint_key(cfg: TrainConfig) -> tuple:
    return (cfg.dataset, cfg.data_dir, cfg.synthetic_train_size, cfg.synthetic_val_size, cfg.resolution)


def share_fingerprint(cfg: TrainConfig, value: str) -> None:
    """Take the fingerprint another rank computed (train/world.py: rank 0 stats the files)."""
    _FINGERPRINTS[_fingerprint_key(cfg)] = value


def _folder_digest(root: Path) -> str:
    """The names and sizes of an image folder's files: a stat() of every file."""
    digest = hashlib.sha256()
    for split in ("train", "val"):
        for directory, _, files in sorted(os.walk(root / split)):
            for name in sorted(files):
                path = Path(directory) / name
                digest.update(f"{path.relative_to(root)}:{path.stat().st_size};".encode())
    return digest.hexdigest()[:16]


def folder_fingerprint(root: Path) -> str:
    """An image folder's fingerprint (_folder_digest), kept in the cache under the state of its
    folders (the path, modification time and entry count of train/, val/ and every class folder:
    a file added, removed or renamed changes them). ImageNet's 1.33M file stats, minutes on a
    shared file system, are then paid once per state of the folder, not at every start of every
    rank. A file rewritten in place under its old name (cp over it) changes no folder: touch its
    class folder, or delete ~/.cache/convnext-roadmap/folder-fingerprints/, to have it seen."""
    state = hashlib.sha256(str(root.resolve()).encode())
    try:
        for split in ("train", "val"):
            for directory, subdirs, files in sorted(os.walk(root / split)):
                stat = os.stat(directory)
                state.update(
                    f"{Path(directory).relative_to(root)}:{stat.st_mtime_ns}:{len(subdirs)}:{len(files)};".encode()
                )
    except OSError:
        return _folder_digest(root)
    cached = CACHE_DIR / "folder-fingerprints" / f"{state.hexdigest()[:24]}.txt"
    try:
        value = cached.read_text().strip()
        if len(value) == 16:
            return value
    except OSError:
        pass
    value = _folder_digest(root)
    try:
        from ..store.files import atomic_write_text

        atomic_write_text(cached, value + "\n")
    except OSError:  # no writable cache: computed again next time
        pass
    return value


def dataset_info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise KeyError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name]


@dataclass(frozen=True)
class DataFacts:
    num_classes: int
    in_chans: int
    train_images: int  # after train_subset


def describe(cfg: TrainConfig) -> DataFacts:
    """Classes, channels and training images of a study's data, without loading it: from the
    registry, the config (synthetic sizes, subsets) or, for an image folder, its files."""
    info = dataset_info(cfg.dataset)
    classes, images = info.num_classes, info.train_size
    if cfg.dataset == "synthetic":
        images = cfg.synthetic_train_size
    if cfg.dataset == "imagefolder":
        root = Path(cfg.data_dir or "") / "train"
        if not cfg.data_dir or not root.is_dir():
            raise DataError(
                f"train.data_dir={cfg.data_dir!r} must be a folder with train/ and val/ class "
                "sub-folders (ImageNet or Imagenette layout); pass --data-dir"
            )
        class_dirs = [d for d in os.scandir(root) if d.is_dir()]
        classes = len(class_dirs)
        images = sum(1 for d in class_dirs for f in os.scandir(d.path) if f.is_file())
    if cfg.train_subset:
        images = min(images, cfg.train_subset)
    return DataFacts(classes, info.in_chans, images)
