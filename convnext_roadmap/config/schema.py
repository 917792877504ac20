"""A study and its training recipe as dataclasses, each field checked as it is read.

`StudyConfig` is what a study YAML holds (ablations/*.yaml, or a user's `--config`);
`TrainConfig` its `train:` block, the recipe of every run. `from_dict` types a mapping into
them and names the key of any mistake. Loading, layering and checking a whole study (its
steps, budgets) is config/load.py's.
"""

from __future__ import annotations

import math
import re
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from convnext_steps.typecheck import matches, type_text

from ..errors import ConfigError
from .cluster import ClusterConfig

LOGGERS = ("csv", "tensorboard", "mlflow", "wandb")  # Lightning loggers a study can write to
PRETRAINED = ("torchvision",)  # where `train.pretrained` takes a step's starting weights from


@dataclass
class TrainConfig:
    """One training recipe. Learning rate is given at `lr_reference_batch` and scaled
    linearly to the global batch (the paper: 4e-3 at 4096)."""

    dataset: str = "fashion_mnist"
    data_dir: str | None = None  # where the data set is (None: the dataset's usual places)
    resolution: int = 32
    width_mult: float = 1.0
    epochs: int = 300
    warmup_epochs: float = 20.0
    batch_size: int = 128  # per device
    lr: float = 4e-3
    lr_reference_batch: int = 4096
    min_lr: float = 1e-6
    weight_decay: float = 0.05
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # AdamW's
    optimizer: str = "adamw"  # adamw (the paper's) or sgd (with momentum; the classic ResNet recipe)
    momentum: float = 0.9  # SGD's
    label_smoothing: float = 0.1
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    randaugment_ops: int = 0  # 0 = off; the paper: 9 magnitude, 2 ops ("rand-m9-mstd0.5")
    randaugment_magnitude: int = 9
    random_erasing: float = 0.0
    # How RandAugment and Random Erasing are drawn (docs/recipe.md). torchvision: its RandAugment
    # (magnitude of 31 bins, every op applied, no noise) and erasing with zeros. timm: ConvNeXt's
    # rand-m{magnitude}-mstd{randaugment_magnitude_std}-inc1 (magnitude of 10, each op with p 0.5,
    # the increasing ops) in data/recipe_augment.py; pixel: erasing with random normal values.
    randaugment_impl: str = "torchvision"
    randaugment_magnitude_std: float = 0.0  # timm's mstd: the magnitude's noise per op (timm only)
    random_erasing_mode: str = "zeros"  # zeros (torchvision's) or pixel (timm's --remode pixel)
    interpolation: str = "bilinear"  # resizing (RandomResizedCrop, validation resize) and timm's geometric ops
    # In-memory data sets: images that share one draw of RandAugment and erasing parameters with
    # the torchvision transforms (which draw once per call); 1: per image. timm's ops: per image.
    augment_chunk: int = 16
    crop_padding: int | None = 4  # in-memory data sets: random crop after zero padding (null or 0: none)
    hflip: bool = True
    drop_path_rate: float = 0.0
    # Batches whose gradients are summed before each optimizer step (Lightning's
    # accumulate_grad_batches; ConvNeXt's --update_freq): the global batch, which scales lr, is
    # batch_size x devices x nodes x this.
    accumulate_grad_batches: int = 1
    ema_decay: float | None = None  # None: no EMA, as in the roadmap
    train_subset: int | None = None  # first N of a fixed random permutation (None: all)
    val_subset: int | None = None
    synthetic_train_size: int = 512
    synthetic_val_size: int = 256
    val_checks_per_epoch: int = 1
    # The checks before a run's last validate on this many images of the validation set (the
    # first N of a fixed permutation); the last check, after the final optimizer step, on all of
    # it. None: every check on the whole set. Budgets other than the recipe's own set it (fit_to_budget).
    curve_val_images: int | None = None
    precision: str = (
        "auto"  # auto: bf16-mixed on a bf16 GPU or CPU, else 16-mixed (GPU) / 32-true; or a Lightning value
    )
    channels_last: bool = True
    # torch.compile the network (in place: checkpoints keep their keys). Pays back only over long
    # runs (benchmarks/compile_payback.py), so it is on in the GPU presets only.
    compile: bool = False
    num_workers: int = 0  # DataLoader workers (image-folder data sets only)
    checkpoint_every_s: int = 60  # also at the end of each epoch
    devices: str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    accelerator: str = "auto"
    # Start from ImageNet weights instead of random ones: `torchvision` (steps 0 and 15 only,
    # width_mult 1; see train/weights.py). Enters the config hash only when set.
    pretrained: str | None = None

    def check(self) -> None:
        from ..data.registry import DATASETS

        if self.dataset not in DATASETS:
            raise ConfigError(f"train.dataset: {self.dataset!r} is unknown; allowed: {', '.join(DATASETS)}")
        for item in fields(self):  # nan and inf pass every comparison below: refuse them first
            value = getattr(self, item.name)
            for number in value if isinstance(value, list) else [value]:
                if isinstance(number, float) and not math.isfinite(number):
                    raise ConfigError(f"train.{item.name} must be a finite number, got {value}")
        positive = (
            "resolution",
            "epochs",
            "batch_size",
            "lr_reference_batch",
            "val_checks_per_epoch",
            "num_nodes",
            "synthetic_train_size",
            "synthetic_val_size",
            "checkpoint_every_s",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"train.{name} must be > 0, got {getattr(self, name)}")
        for name in ("width_mult", "lr"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"train.{name} must be > 0, got {getattr(self, name)}")
        if self.resolution < 32:
            raise ConfigError(f"train.resolution must be >= 32 (ConvNeXt downsamples 32x), got {self.resolution}")
        if self.warmup_epochs < 0 or self.warmup_epochs > self.epochs:
            raise ConfigError(f"train.warmup_epochs must be in [0, epochs={self.epochs}], got {self.warmup_epochs}")
        for name in ("label_smoothing", "random_erasing", "drop_path_rate"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"train.{name} must be in [0, 1), got {getattr(self, name)}")
        for name in ("train_subset", "val_subset", "curve_val_images"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ConfigError(f"train.{name} must be > 0 or null, got {getattr(self, name)}")
        if self.optimizer not in ("adamw", "sgd"):
            raise ConfigError(f"train.optimizer: {self.optimizer!r} is unknown; allowed: adamw, sgd")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"train.momentum must be in [0, 1), got {self.momentum}")
        if self.pretrained is not None and self.pretrained not in PRETRAINED:
            raise ConfigError(
                f"train.pretrained: {self.pretrained!r} is unknown; allowed: {', '.join(PRETRAINED)} or null"
            )
        if self.crop_padding is not None and self.crop_padding < 0:
            raise ConfigError(f"train.crop_padding must be >= 0 or null, got {self.crop_padding}")
        if self.dataset == "imagefolder" and self.crop_padding not in (None, TrainConfig.crop_padding):
            # Image folders crop with RandomResizedCrop (the paper's recipe), which has no zero
            # padding: crop_padding is the in-memory data sets' knob, and their presets set it.
            raise ConfigError(
                f"train.crop_padding={self.crop_padding} applies to in-memory data sets only; image "
                "folders crop with RandomResizedCrop: set train.crop_padding=null"
            )
        if len(self.betas) != 2 or not all(0.0 <= beta < 1.0 for beta in self.betas):
            raise ConfigError(f"train.betas must be two numbers in [0, 1), got {self.betas}")
        self.check_augmentation()
        for name in ("min_lr", "weight_decay", "mixup_alpha", "cutmix_alpha", "randaugment_ops", "num_workers"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ConfigError(f"train.ema_decay must be in (0, 1) or null, got {self.ema_decay}")
        self.check_lightning_names()

    def check_augmentation(self) -> None:
        choices = {
            "randaugment_impl": ("torchvision", "timm"),
            "random_erasing_mode": ("zeros", "pixel"),
            "interpolation": ("bilinear", "bicubic"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"train.{name}: {getattr(self, name)!r} is unknown; allowed: {', '.join(allowed)}")
        if self.randaugment_magnitude_std < 0:
            raise ConfigError(f"train.randaugment_magnitude_std must be >= 0, got {self.randaugment_magnitude_std}")
        if self.randaugment_impl == "torchvision" and self.randaugment_magnitude_std:
            raise ConfigError(
                "train.randaugment_magnitude_std applies to train.randaugment_impl=timm only "
                "(torchvision's RandAugment has no magnitude noise)"
            )
        top = 10 if self.randaugment_impl == "timm" else 30
        if not 0 <= self.randaugment_magnitude <= top:
            raise ConfigError(
                f"train.randaugment_magnitude must be in [0, {top}] with randaugment_impl="
                f"{self.randaugment_impl}, got {self.randaugment_magnitude}"
            )
        for name in ("augment_chunk", "accumulate_grad_batches"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}")

    def check_lightning_names(self) -> None:
        """precision, accelerator, strategy and devices as Lightning takes them (a wrong one was
        a traceback when the first run built its Trainer)."""
        precisions, accelerators, strategies = lightning_choices()
        if self.precision not in precisions:
            raise ConfigError(f"train.precision: {self.precision!r} is unknown; allowed: {', '.join(precisions)}")
        if self.accelerator not in accelerators:
            raise ConfigError(f"train.accelerator: {self.accelerator!r} is unknown; allowed: {', '.join(accelerators)}")
        if self.strategy not in strategies:
            common = [name for name in strategies if "_" not in name]  # the registry's variants left out
            raise ConfigError(
                f"train.strategy: {self.strategy!r} is unknown; allowed: {', '.join(common)} and their "
                "variants in Lightning's StrategyRegistry (e.g. ddp_find_unused_parameters_true)"
            )
        devices = self.devices.strip().rstrip(",")
        ids = devices.split(",")
        if not (
            devices in ("auto", "-1") or (all(i.strip().isdigit() for i in ids) and (len(ids) > 1 or int(ids[0]) > 0))
        ):
            raise ConfigError(
                f"train.devices: {self.devices!r} must be auto, a number of devices > 0, -1 (all) "
                "or a list of device indices such as 0,1"
            )


@dataclass
class StudyConfig:
    name: str
    description: str = ""
    roadmap: str = "resnet50"  # the built-in roadmap whose indices and `all` the steps refer to
    # "all", an index, or slugs / indices / ranges as a list or a comma string: "0-5,kernel_7"
    steps: str | int | list[str | int] = "all"
    seeds: list[int] = field(default_factory=lambda: [0])
    # Training budgets in epochs: every (step, seed) is trained once per budget, its recipe's
    # schedule fitted to it (fit_to_budget). None: the recipe's own `train.epochs` only.
    budgets: list[int] | None = None
    # Steps of the study's own: each a mapping with slug, parent, change (NetSpec fields), and
    # optionally label, train (this step's recipe), sweep, phase (config/define.py).
    define: list[dict[str, Any]] = field(default_factory=list)
    # The paper's ambiguities, each read one way for every step (convnext_steps.READINGS):
    # layer_scale: last_step | every_step; init: trunc_normal | pytorch_default;
    # conv_bias: unless_batchnorm | authors. Unset: the default, the first of each.
    readings: dict[str, str] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    # Where metrics go besides the CSV log the report reads (always written): any of LOGGERS.
    # Not part of any run's config hash.
    logger: list[str] = field(default_factory=lambda: ["csv"])
    # How `--submit slurm|local` asks for machines (config/cluster.py). Not part of any run's hash.
    cluster: ClusterConfig = field(default_factory=ClusterConfig)

    def check(self) -> None:
        check_study_name(self.name, "name")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ConfigError(f"seeds: need distinct non-negative integers, got {self.seeds}")
        for name in self.logger:
            if name not in LOGGERS:
                raise ConfigError(f"logger: {name!r} is unknown; allowed: {', '.join(LOGGERS)}")
        if max(self.seeds) >= MAX_SEED:
            # Lightning's seed_everything raises on a seed out of numpy's range (a traceback mid-study)
            raise ConfigError(f"seeds: each must be below 2**32 = {MAX_SEED}, got {max(self.seeds)}")
        self.train.check()
        self.cluster.check()


MAX_SEED = 2**32
STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


def check_study_name(name: Any, where: str) -> None:
    """A study's name is a folder name under results/ and plots/: a plain name, never a path."""
    if not isinstance(name, str) or not STUDY_NAME.fullmatch(name):
        raise ConfigError(
            f"{where}: {name!r} must be a plain name: letters, digits, - and _, not starting "
            "with - or _ (no dots, no path)"
        )


def lightning_choices() -> tuple[list[str], list[str], list[str]]:
    """The precision, accelerator and strategy names Lightning takes ("auto" first)."""
    from lightning_fabric.plugins.precision.precision import (
        _PRECISION_INPUT_STR,
        _PRECISION_INPUT_STR_ALIAS,
    )
    from pytorch_lightning.accelerators import AcceleratorRegistry
    from pytorch_lightning.strategies import StrategyRegistry

    precisions = ["auto", *typing.get_args(_PRECISION_INPUT_STR), *typing.get_args(_PRECISION_INPUT_STR_ALIAS)]
    accelerators = ["auto", "gpu", *sorted(AcceleratorRegistry.available_accelerators())]
    return precisions, accelerators, ["auto", *StrategyRegistry.available_strategies()]


# Keys a TrainConfig once had, with the value that meant "not set": the configs kept in records
# and checkpoints of earlier versions hold them. Layer scale is the architecture's (NetSpec).
RETIRED = {
    TrainConfig: {
        "layer_scale_init": (
            None,
            "layer scale is part of a step's architecture now: set it "
            "with a define: step's change: {layer_scale_init: X}, or with "
            "readings: {layer_scale: every_step}",
        )
    }
}


def from_dict(cls: type, data: dict[str, Any], where: str = "") -> Any:
    """Build a dataclass from a mapping; unknown keys and wrong types are ConfigErrors that
    name the key and what is allowed."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    kwargs = {}
    for key, value in data.items():
        path = f"{where}{key}"
        if key in RETIRED.get(cls, {}):
            unset, advice = RETIRED[cls][key]
            if value == unset:
                continue
            raise ConfigError(f"{path} is no longer a recipe key: {advice}")
        if key not in names:
            raise ConfigError(f"unknown key {path!r}; allowed: {', '.join(names)}")
        annotation = hints[key]
        if is_dataclass(annotation):
            value = from_dict(annotation, value, f"{path}.")
        elif not matches(value, annotation):
            raise ConfigError(f"{path}: {value!r} is not of type {type_text(annotation)}")
        if annotation is float or float in typing.get_args(annotation):
            value = float(value) if isinstance(value, int) else value
        kwargs[key] = value
    return cls(**kwargs)


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """A mapping layered over another, nested mappings key by key."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged
