"""Parameters and multiply-adds, in the paper's convention ("FLOPs" = multiply-accumulates)."""

from __future__ import annotations

import functools

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from . import autotune, build_model
from .step import Step


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_macs(model: nn.Module, resolution: int = 224, in_chans: int = 3) -> int:
    """Multiply-adds of one forward pass on one image. FlopCounterMode counts 2 FLOPs per
    multiply-add of convs and matmuls (norms, activations and pooling are not counted, as in
    the paper's tables), so we halve it. `forward` is called directly: a model compiled in
    place (`train.compile`) is counted eagerly instead of being compiled again for batch 1.
    The image is made on the model's device: a model built on the meta device is counted
    without computing anything (what `runner.py --list` does)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    x = torch.zeros(1, in_chans, resolution, resolution, device=device)
    with FlopCounterMode(display=False) as counter, autotune.off():  # conv or matmul: the same count
        model.forward(x)
    model.train(was_training)
    return counter.get_total_flops() // 2


@functools.cache
def forward_gmacs(step: Step, resolution: int, width_mult: float, num_classes: int, in_chans: int) -> float:
    """One image's forward multiply-adds (x 1e9) of a step at a shape, counted on the meta
    device once per step and shape."""
    with torch.device("meta"):
        model = build_model(step, num_classes=num_classes, in_chans=in_chans, width_mult=width_mult)
    return count_macs(model, resolution, in_chans) / 1e9


@functools.cache
def gmacs_at_224(step: Step) -> float:
    """A step's multiply-adds (x 1e9) in the paper's convention: width 1, 224x224, 1000 classes."""
    return count_macs(build_model(step)) / 1e9
