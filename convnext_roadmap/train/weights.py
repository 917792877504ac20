"""Trained weights as outputs, and ImageNet weights as inputs.

Every finished run keeps its final weights in `results/<study>/weights/<step>__seed<k>__<hash8>.pt`
(git-ignored): `torch.save` of the network's state_dict, written atomically. The config hash
in the name keeps the weights of two recipes of the same (step, seed) apart.

    from roadmap.weights import load_run
    model = load_run("results/cpu", "convnext_t", seed=0)    # nn.Module, eval mode

`python runner.py evaluate --study S --step X --seed K` re-evaluates them on the study's
validation set (`evaluate_run`).

`train.pretrained: torchvision` starts steps 0 and 15 from torchvision's ImageNet weights
(`load_pretrained`): torchvision's state dict copied into ours (convnext_steps.
load_torchvision_weights), with a new classifier for the data set and, for one input channel
(Fashion-MNIST), the stem's RGB filters summed over their input channels (a grey image x seen
as RGB (x, x, x) gives the same response, the usual trick for grey inputs).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from convnext_steps import autotune, build_model, get_step, load_torchvision_weights, step_from_spec
from convnext_steps.cpu_kernels import use_cpu_kernels

from ..config.define import run_train_config, study_steps
from ..config.schema import StudyConfig, TrainConfig, from_dict
from ..errors import ConfigError
from ..store.files import atomic_write
from ..store.lookup import find_record
from ..store.record import Record, run_name

# The steps torchvision has ImageNet weights for, and the name of their weights enum.
TORCHVISION_WEIGHTS = {"resnet50": "ResNet50_Weights", "convnext_t": "ConvNeXt_Tiny_Weights"}


def weights_path(study_dir: Path, name: str, config_hash: str) -> Path:
    """`weights/<run name>__<hash8>.pt` (run names: records.run_name)."""
    return Path(study_dir) / "weights" / f"{name}__{config_hash[:8]}.pt"


def save_weights(path: Path, model: nn.Module) -> Path:
    """torch.save of the model's state_dict (CPU, contiguous tensors) to a temporary file in
    the same folder, fsync, then rename over `path`: never a half-written file."""
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    atomic_write(path, lambda handle: torch.save(state, handle), binary=True)
    return path


def run_weights(study_dir: Path, record: Record) -> tuple[TrainConfig, dict[str, torch.Tensor]]:
    """A finished run's training config and its saved state_dict."""
    path = (
        Path(study_dir) / record.weights
        if record.weights
        else weights_path(study_dir, run_name(record.step, record.seed), record.config_hash)
    )
    if not path.is_file():
        raise ConfigError(
            f"no saved weights for {record.step} seed {record.seed} ({path}): the run "
            "finished before weights were kept, or they were deleted; delete its record "
            "and run the study again to retrain it"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same advice
        raise ConfigError(
            f"{path} is unreadable ({type(error).__name__}); delete it and its record and run the study again"
        ) from None
    return from_dict(TrainConfig, record.config), state


def load_run(
    study_dir: str | Path, step: str | int, seed: int = 0, budget: int | None = None, cpu_kernels: bool = False
) -> nn.Module:
    """The trained network of one finished run (step slug or index, seed; the budget in epochs
    when the study has several), in eval mode, in plain PyTorch layers. `cpu_kernels=True`: with
    the runner's CPU kernels and the 1x1 choices the run trained with (shapes it did not train
    on are measured once, convnext_steps/autotune.py)."""
    record = find_record(Path(study_dir), step, seed, budget)
    cfg, state = run_weights(Path(study_dir), record)
    step = step_from_spec(record.step, record.spec)
    model = build_model(
        step,
        num_classes=record.num_classes,
        in_chans=record.in_chans,
        width_mult=cfg.width_mult,
        drop_path_rate=cfg.drop_path_rate,
    )
    model.load_state_dict(state)
    if cpu_kernels:
        autotune.use_choices(use_cpu_kernels(model), trained_choices(record))
    return model.eval()


def trained_choices(record: Record) -> dict[str, str] | None:
    """The conv-or-matmul choices a run's 1x1 convs trained with (autotune.use_choices): its
    record's; None (conv throughout) for a record from before they were noted, or a run of a
    compiled model (torch.compile traces the conv)."""
    return None if record.config_value("compile") else record.pointwise


# ------------------------------------------------------------------ ImageNet weights (input)


def check_pretrained(study: StudyConfig) -> None:
    """Config errors of `train.pretrained` (the study's, or a step's own recipe's), before
    anything trains."""
    wanted = [(step, run_train_config(study, step)) for step in study_steps(study)]
    wanted = [(step, train) for step, train in wanted if train.pretrained is not None]
    other = [
        step.slug for step, _ in wanted if step.slug not in TORCHVISION_WEIGHTS or step.spec != get_step(step.slug).spec
    ]
    if other:
        raise ConfigError(
            f"train.pretrained: torchvision has ImageNet weights for steps 0 (resnet50) and 15 "
            f"(convnext_t) only, not {', '.join(other)}; choose --steps 0,15"
        )
    for step, train in wanted:
        if train.width_mult != 1.0:
            raise ConfigError(
                f"train.pretrained needs train.width_mult 1 (torchvision's widths), got "
                f"{train.width_mult} for {step.slug}"
            )


def torchvision_weights_file(slug: str) -> tuple[str, Path]:
    """Where torchvision's ImageNet weights for a step come from (URL) and where torch.hub
    keeps them: $TORCH_HOME/hub/checkpoints/<file name of the URL>."""
    import torchvision

    weights = getattr(torchvision.models, TORCHVISION_WEIGHTS[slug]).DEFAULT
    return weights.url, Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name


def ensure_torchvision_weights(slug: str) -> Path:
    """The local file of a step's ImageNet weights, downloaded by torch.hub if it is not there;
    a one-line ConfigError that says where to put it when it cannot be downloaded."""
    url, path = torchvision_weights_file(slug)
    if path.is_file():
        return path
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # torch.hub's "Downloading: ..." line
            torch.hub.load_state_dict_from_url(url, model_dir=str(path.parent), check_hash=False, progress=False)
    except Exception as error:  # noqa: BLE001 - offline, proxy, disk: the same advice
        raise ConfigError(
            f"train.pretrained: torchvision's ImageNet weights for {slug} are not in {path} and "
            f"could not be downloaded ({type(error).__name__}); download {url} elsewhere and put "
            f"it at {path} ($TORCH_HOME/hub/checkpoints/)"
        ) from None
    return path


def torchvision_state_dict(slug: str) -> dict[str, torch.Tensor]:
    path = ensure_torchvision_weights(slug)
    try:  # loaded by hand: no check of the hash prefix in the file name
        return dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as error:  # noqa: BLE001
        raise ConfigError(
            f"train.pretrained: {path} is not a readable state dict ({type(error).__name__}); "
            "delete it and download it again"
        ) from None


def load_pretrained(
    model: nn.Module, slug: str, in_chans: int, state: Mapping[str, torch.Tensor] | None = None
) -> None:
    """Copy torchvision's ImageNet weights for step 0 or 15 into `model` (width 1), keeping
    the model's own freshly initialised classifier (the data set's classes are not
    ImageNet's); for in_chans=1 the stem's filters are summed over RGB."""
    theirs = dict(state if state is not None else torchvision_state_dict(slug))
    names = list(theirs)
    stem = theirs[names[0]]  # conv1.weight / features.0.0.weight: (out, 3, k, k)
    if in_chans != stem.shape[1]:
        if in_chans != 1:
            raise ConfigError(f"train.pretrained: {in_chans} input channels; ImageNet weights fit 3 (or 1: summed)")
        theirs[names[0]] = stem.sum(dim=1, keepdim=True)
    ours = model.state_dict()
    our_names = list(ours)
    for their_name, our_name in zip(names[-2:], our_names[-2:], strict=True):  # the classifier: weight, bias
        theirs[their_name] = ours[our_name]
    try:
        load_torchvision_weights(model, theirs)
    except (ValueError, RuntimeError) as error:
        raise ConfigError(
            f"train.pretrained: torchvision's {slug} weights do not fit this model "
            f"({str(error).splitlines()[0]}); pretrained needs width_mult 1 and the step's own "
            "layer scale"
        ) from None
