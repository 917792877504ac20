"""Copy torchvision's ResNet-50 / ConvNeXt-T / ConvNeXt-B weights into the roadmaps' ends.

Our modules hold the same tensors as torchvision's, in the same order, except that
torchvision's ConvNeXt block registers its layer scale first and uses Linear layers where we
use 1x1 convs. So the copy is positional, after moving each layer scale to the end of its
block; every pair is checked for size, and the equality tests compare outputs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import nn

_BLOCK_PREFIX = re.compile(r"^(features\.\d+\.\d+\.)")


def _torchvision_order(state: Mapping[str, torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
    first_seen: dict[str, int] = {}
    keyed = []
    for i, (name, tensor) in enumerate(state.items()):
        match = _BLOCK_PREFIX.match(name)
        group = first_seen.setdefault(match.group(1), i) if match else i
        keyed.append(((group, name.endswith("layer_scale"), i), name, tensor))
    return [(name, tensor) for _, name, tensor in sorted(keyed, key=lambda k: k[0])]


def load_torchvision_weights(model: nn.Module, torchvision_state: Mapping[str, torch.Tensor]) -> None:
    """Load a state dict of torchvision's `resnet50` into `resnet50`, of `convnext_tiny` into
    `convnext_t` or of `convnext_base` into `convnext_b` (width 1; the classifier must have
    the same number of classes)."""
    ours = model.state_dict()
    theirs = _torchvision_order(torchvision_state)
    if len(theirs) != len(ours):
        raise ValueError(
            f"state dicts differ in length ({len(theirs)} vs {len(ours)}): "
            "only resnet50, convnext_tiny and convnext_base are supported"
        )
    converted = {}
    for (name, target), (their_name, tensor) in zip(ours.items(), theirs, strict=True):
        if target.numel() != tensor.numel():
            raise ValueError(f"{their_name} {tuple(tensor.shape)} does not fit {name} {tuple(target.shape)}")
        converted[name] = tensor.reshape(target.shape).clone()
    model.load_state_dict(converted)
