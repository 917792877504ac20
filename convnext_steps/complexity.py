"""Parameters and multiply-adds, in the paper's convention ("FLOPs" = multiply-accumulates)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from . import autotune


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
