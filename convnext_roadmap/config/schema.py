"""Studies and training presets: dataclasses filled from YAML, validated strictly.

A preset (`ablations/<name>.yaml`) is a whole study: its steps, seeds and training recipe.
A user's `--config FILE.yaml` has the same keys and is layered over a preset (its own
`preset:` key, or `--preset`); command-line overrides come last.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from convnext_steps.typecheck import matches, type_text

ABLATIONS_DIR = Path(__file__).resolve().parents[1] / "ablations"
LOGGERS = ("csv", "tensorboard", "mlflow", "wandb")  # Lightning loggers a study can write to
PRETRAINED = ("torchvision",)  # where `train.pretrained` takes a step's starting weights from


class ConfigError(ValueError):
    """A user-facing configuration problem; its message says what to change."""


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
    crop_padding: int = 4  # in-memory data sets: random crop after zero padding
    hflip: bool = True
    drop_path_rate: float = 0.0
    layer_scale_init: float | None = None  # None: each step's own (1e-6 at ConvNeXt-T only)
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
    precision: str = "auto"  # auto: bf16-mixed on a bf16 GPU or CPU, else 16-mixed (GPU) / 32-true; or a Lightning value
    channels_last: bool = True
    # torch.compile the network (in place: checkpoints keep their keys). Pays back only over long
    # runs: on the development CPU compiling took longer than a whole default-study run
    # (benchmarks/compile_payback.py), so it is on in the GPU presets only.
    compile: bool = False
    num_workers: int = 0  # DataLoader workers (image-folder data sets only)
    checkpoint_every_s: int = 60  # also at the end of each epoch
    devices: str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    accelerator: str = "auto"
    # Start from ImageNet weights instead of random ones: `torchvision` (steps 0 and 15 only,
    # width_mult 1; see roadmap/weights.py). Enters the config hash only when set.
    pretrained: str | None = None

    def check(self) -> None:
        from .datasets import DATASETS
        if self.dataset not in DATASETS:
            raise ConfigError(f"train.dataset: {self.dataset!r} is unknown; allowed: {', '.join(DATASETS)}")
        for item in fields(self):  # nan and inf pass every comparison below: refuse them first
            value = getattr(self, item.name)
            for number in (value if isinstance(value, list) else [value]):
                if isinstance(number, float) and not math.isfinite(number):
                    raise ConfigError(f"train.{item.name} must be a finite number, got {value}")
        positive = ("resolution", "epochs", "batch_size", "lr_reference_batch", "val_checks_per_epoch",
                    "num_nodes", "synthetic_train_size", "synthetic_val_size", "checkpoint_every_s")
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
            raise ConfigError(f"train.pretrained: {self.pretrained!r} is unknown; allowed: "
                              f"{', '.join(PRETRAINED)} or null")
        if self.dataset == "imagefolder" and self.crop_padding != TrainConfig.crop_padding:
            # Refused, not honoured: image folders crop with RandomResizedCrop (the paper's
            # recipe), which zero padding has no place in; honouring the default 4 would add
            # padding crops to the image-folder presets, and a new default would change the
            # hash of every existing run. So crop_padding is the in-memory data sets' knob.
            raise ConfigError(f"train.crop_padding={self.crop_padding} applies to in-memory data sets only; image "
                              "folders crop with RandomResizedCrop: leave crop_padding out of an imagefolder study")
        if len(self.betas) != 2 or not all(0.0 <= beta < 1.0 for beta in self.betas):
            raise ConfigError(f"train.betas must be two numbers in [0, 1), got {self.betas}")
        for name in ("min_lr", "weight_decay", "mixup_alpha", "cutmix_alpha", "randaugment_ops", "num_workers"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ConfigError(f"train.ema_decay must be in (0, 1) or null, got {self.ema_decay}")
        self.check_lightning_names()

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
            raise ConfigError(f"train.strategy: {self.strategy!r} is unknown; allowed: {', '.join(common)} and their "
                              "variants in Lightning's StrategyRegistry (e.g. ddp_find_unused_parameters_true)")
        devices = self.devices.strip().rstrip(",")
        ids = devices.split(",")
        if not (devices in ("auto", "-1") or (all(i.strip().isdigit() for i in ids) and
                                               (len(ids) > 1 or int(ids[0]) > 0))):
            raise ConfigError(f"train.devices: {self.devices!r} must be auto, a number of devices > 0, -1 (all) "
                              "or a list of device indices such as 0,1")


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
    # optionally label, train (this step's recipe), sweep, phase (roadmap/definitions.py).
    define: list[dict[str, Any]] = field(default_factory=list)
    # The paper's ambiguities, each read one way for every step (convnext_steps.READINGS):
    # layer_scale: last_step | every_step; init: trunc_normal | pytorch_default;
    # conv_bias: unless_batchnorm | authors. Unset: the default, the first of each.
    readings: dict[str, str] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    # Where metrics go besides the CSV log the report reads (always written): any of LOGGERS.
    # Not part of any run's config hash.
    logger: list[str] = field(default_factory=lambda: ["csv"])

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
        check_budgets(self.budgets)
        from .definitions import study_steps
        for step in study_steps(self):  # every step resolves, builds and has a valid recipe
            if self.budgets and "epochs" in step.train:
                raise ConfigError(f"define[{step.slug}].train.epochs: a study with budgets trains every step for "
                                  "each budget; leave epochs out of the step's recipe")
            for budget in study_budgets(self):
                fit_to_budget(run_train_config(self, step), budget).check()


def check_budgets(budgets: Any, where: str = "budgets") -> None:
    """Budgets are a non-empty list of distinct whole numbers of epochs, or null."""
    if budgets is None:
        return
    example = "e.g. [1, 3, 10]"
    if not isinstance(budgets, list) or not budgets:
        raise ConfigError(f"{where}: {budgets!r} must be a non-empty list of epochs, {example}, or null")
    for budget in budgets:
        if isinstance(budget, bool) or not isinstance(budget, (int, float)):
            raise ConfigError(f"{where}: {budget!r} is not a number of epochs; give whole epochs, {example}")
        if budget != int(budget):
            raise ConfigError(f"{where}: {budget!r} is a fraction of an epoch; budgets are whole epochs, {example}")
        if budget < 1:
            raise ConfigError(f"{where}: {budget!r} must be at least 1 epoch, {example}")
    if len(set(budgets)) != len(budgets):
        twice = sorted({b for b in budgets if budgets.count(b) > 1})
        raise ConfigError(f"{where}: {', '.join(map(str, twice))} given twice; list each budget once, {example}")


# A budget other than the recipe's own validates twice per epoch, the checks before the last on this
# many images (TrainConfig.curve_val_images): under 5% of the run's multiply-adds at every budget
# of the default data (10k validation images, 60k training images; docs/budget.md).
BUDGET_VAL_CHECKS_PER_EPOCH = 2
BUDGET_CURVE_VAL_IMAGES = 1000


def fit_to_budget(train: TrainConfig, epochs: int) -> TrainConfig:
    """The recipe fitted to a budget of `epochs`: warmup keeps its share of the run and the
    cosine spans the whole of it (the paper: 20 of 300 epochs), as Budgeted Training (Li et al.
    2019) asks of a schedule. The recipe's own number of epochs returns the recipe unchanged, so
    its runs keep their config hashes."""
    if epochs == train.epochs:
        return train
    return replace(train, epochs=epochs, warmup_epochs=round(train.warmup_epochs * epochs / train.epochs, 9),
                   val_checks_per_epoch=BUDGET_VAL_CHECKS_PER_EPOCH, curve_val_images=BUDGET_CURVE_VAL_IMAGES)


def study_budgets(study: StudyConfig) -> list[int]:
    """The study's budgets in epochs, smallest first (the recipe's own epochs when none are set)."""
    return sorted(int(b) for b in study.budgets) if study.budgets else [study.train.epochs]


def run_train_config(study: StudyConfig, step: Any) -> TrainConfig:
    """The recipe one step trains with: the study's, with the step's own `train:` keys over it."""
    if not step.train:
        return study.train
    return from_dict(TrainConfig, _merge(asdict(study.train), dict(step.train)), f"define[{step.slug}].train.")


MAX_SEED = 2**32
STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


def check_study_name(name: Any, where: str) -> None:
    """A study's name is a folder name under results/ and plots/: a plain name, never a path."""
    if not isinstance(name, str) or not STUDY_NAME.fullmatch(name):
        raise ConfigError(f"{where}: {name!r} must be a plain name: letters, digits, - and _, not starting "
                          "with - or _ (no dots, no path)")


def lightning_choices() -> tuple[list[str], list[str], list[str]]:
    """The precision, accelerator and strategy names Lightning takes ("auto" first)."""
    from lightning_fabric.plugins.precision.precision import _PRECISION_INPUT_STR, _PRECISION_INPUT_STR_ALIAS
    from pytorch_lightning.accelerators import AcceleratorRegistry
    from pytorch_lightning.strategies import StrategyRegistry
    precisions = ["auto", *typing.get_args(_PRECISION_INPUT_STR), *typing.get_args(_PRECISION_INPUT_STR_ALIAS)]
    accelerators = ["auto", "gpu", *sorted(AcceleratorRegistry.available_accelerators())]
    return precisions, accelerators, ["auto", *StrategyRegistry.available_strategies()]




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


class YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 floats: `1e-3` and `2E5` are numbers (YAML 1.1,
    which PyYAML follows, needs a dot, `1.0e-3`, and reads `1e-3` as a string)."""


YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                 |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                 |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                 |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
                 |[-+]?\.(?:inf|Inf|INF)
                 |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def parse_yaml(text: str) -> Any:
    """YAML text as Python values, with YamlLoader (floats like `1e-3` included)."""
    return yaml.load(text, Loader=YamlLoader)  # noqa: S506 - a SafeLoader subclass


def read_yaml(path: Path) -> dict[str, Any]:
    if path.is_dir():
        raise ConfigError(f"config file {path} is a directory; pass a study YAML file")
    try:
        data = parse_yaml(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path} is not UTF-8 text (byte {error.start}); save it as UTF-8 YAML") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path} is not valid YAML{at}: fix the syntax") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a YAML mapping of study keys")
    return data


def list_presets() -> list[str]:
    return sorted(p.stem for p in ABLATIONS_DIR.glob("*.yaml"))


def preset_path(name: str) -> Path:
    path = ABLATIONS_DIR / f"{name}.yaml"
    if not path.exists():
        raise ConfigError(f"unknown preset {name!r}; available: {', '.join(list_presets())}")
    return path


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _preset_layers(name: str, seen: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """A preset's YAML and, first, those of the presets it is layered over (its `preset:`)."""
    if name in seen:
        raise ConfigError(f"preset {name!r} is layered over itself: {' -> '.join((*seen, name))}")
    data = read_yaml(preset_path(name))
    base = data.pop("preset", None)
    if base is None:
        return [data]
    if not isinstance(base, str):
        raise ConfigError(f"{preset_path(name)}: preset must be a name, one of {', '.join(list_presets())}")
    return _preset_layers(base, (*seen, name)) + [data]


merge = _merge  # a mapping layered over another, nested mappings key by key


def load_study(preset: str, config_file: Path | None = None,
               overrides: dict[str, Any] | None = None) -> tuple[StudyConfig, str]:
    """The resolved study and the preset it was layered on. A YAML file (a user's, or a
    preset that is itself a question over another, like ablations/leave_one_out.yaml) names
    its base with `preset:`; command-line overrides come last."""
    layers: list[dict[str, Any]] = []
    if config_file is not None:
        user = read_yaml(config_file)
        preset = user.pop("preset", preset)
        if not isinstance(preset, str):
            raise ConfigError(f"{config_file}: preset must be a name, one of {', '.join(list_presets())}")
        layers.append(user)
    data: dict[str, Any] = {}
    for layer in _preset_layers(preset) + layers + [overrides or {}]:
        data = _merge(data, layer)
    check_budgets(data.get("budgets"))  # before typing: a fraction gets its own message
    study = from_dict(StudyConfig, data)
    study.check()
    return study, preset


def config_hash(payload: dict[str, Any]) -> str:
    """A short stable hash of what determines a run's result."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def non_default(instance: Any) -> dict[str, Any]:
    """A dataclass's fields that differ from their defaults. What identifies a run is what
    differs from the defaults, so that a new knob (added with a default that changes
    nothing) keeps every earlier record; changing a default's meaning bumps
    records.RECORD_VERSION instead."""
    values = asdict(instance)
    changed = {}
    for f in fields(instance):
        if f.default is not MISSING:
            default = f.default
        elif f.default_factory is not MISSING:
            default = f.default_factory()
        else:  # no default: always part of the identity
            changed[f.name] = values[f.name]
            continue
        default = asdict(default) if is_dataclass(default) else default
        if values[f.name] != (list(default) if isinstance(default, tuple) and isinstance(values[f.name], list)
                              else default):
            changed[f.name] = values[f.name]
    return changed


def result_relevant(train: TrainConfig) -> dict[str, Any]:
    """The training settings that change a run's numbers and are not at their default (not
    where data lives, how many loader workers or how often checkpoints are written)."""
    return {k: v for k, v in non_default(train).items() if k not in NOT_IN_HASH}


# Settings that do not change a run's numbers: where data lives, loader workers, how often
# checkpoints are written, the hardware a run is spread over, compilation.
NOT_IN_HASH = frozenset({"data_dir", "num_workers", "checkpoint_every_s", "devices", "num_nodes", "strategy",
                         "accelerator", "compile"})
