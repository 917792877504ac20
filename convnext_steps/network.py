"""One network that can be every step of the roadmap: `RoadmapNet(spec)` builds a `NetSpec`.

It is built of plain PyTorch layers, in the order of the paper's figures: a stem, four stages
of residual blocks, global pooling and a linear classifier. Faster CPU kernels for the same
layers are a separate, explicit step (cpu_kernels.use_cpu_kernels), which the runner takes.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import StochasticDepth

from .spec import LAYER_SCALE_INIT, ActivationKind, NetSpec, NormKind

__all__ = ["LAYER_SCALE_INIT", "NetSpec", "RoadmapNet", "Block", "LayerNorm2d", "LayerScale", "GRN"]


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor, at each pixel (the paper's "LN")."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def make_norm(kind: NormKind, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels) if kind == "batch" else LayerNorm2d(channels, eps=1e-6)


def make_activation(kind: ActivationKind) -> nn.Module:
    return nn.ReLU(inplace=True) if kind == "relu" else nn.GELU()


def make_conv(
    spec: NetSpec,
    c_in: int,
    c_out: int,
    kernel: int,
    stride: int = 1,
    groups: int = 1,
    followed_by_norm: bool = False,
    bias: bool = True,
    patch: bool = False,
) -> nn.Conv2d:
    """A conv with a bias unless `bias` is False or a BatchNorm follows it (BN cancels a bias;
    LN does not). Odd kernels are padded to keep the map ("same"), except a `patch` conv."""
    bias = bias and not (followed_by_norm and spec.norm == "batch")
    same = kernel % 2 == 1 and not patch
    return nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2 if same else 0, groups=groups, bias=bias)


def resnet_style_bias_free(spec: NetSpec) -> bool:
    """conv_bias="authors": the block's 1x1 convs and the shortcut projections have no bias
    while the network downsamples as ResNet does."""
    return spec.conv_bias == "authors" and not spec.separate_downsampling


class LayerScale(nn.Module):
    """Learnable per-channel scale of the residual branch (CaiT; ConvNeXt uses init 1e-6)."""

    def __init__(self, channels: int, init: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((channels, 1, 1), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gamma * x


class GRN(nn.Module):
    """Global Response Normalization (ConvNeXt V2): x + gamma * x * N(x) + beta, where
    N(x) = G(x) / (mean over channels of G(x) + 1e-6) and G(x) is each channel's L2 norm over
    the map. gamma and beta start at zero, so it starts as the identity."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = torch.linalg.vector_norm(x, dim=(2, 3), keepdim=True)
        n = g / (g.mean(dim=1, keepdim=True) + 1e-6)
        return self.gamma * (x * n) + self.beta + x


class ConvSlot(NamedTuple):
    """One of a block's three convs: channels in and out, kernel, stride, and its role."""

    c_in: int
    c_out: int
    kernel: int
    stride: int = 1
    spatial: bool = False  # the kxk conv (depthwise when spec.depthwise)
    first_1x1: bool = False  # the first 1x1 conv: "one activation" and GRN follow it


def block_convs(spec: NetSpec, c_in: int, width: int, stride: int) -> list[ConvSlot]:
    """The three convs of a block in order, C = the stage's width (Figure 3 of the paper)."""
    k, wide = spec.kernel_size, 4 * width
    if spec.block == "bottleneck":  # ResNet: 1x1 4C->C, kxk C, 1x1 C->4C (block output 4C)
        return [
            ConvSlot(c_in, width, 1, first_1x1=True),
            ConvSlot(width, width, k, stride, spatial=True),
            ConvSlot(width, wide, 1),
        ]
    if spec.block == "inverted":  # MobileNetV2: 1x1 C->4C, kxk 4C, 1x1 4C->C
        return [
            ConvSlot(c_in, wide, 1, first_1x1=True),
            ConvSlot(wide, wide, k, stride, spatial=True),
            ConvSlot(wide, width, 1),
        ]
    # dw_first, the Transformer-like block: kxk C, 1x1 C->4C, 1x1 4C->C
    return [
        ConvSlot(c_in, c_in, k, stride, spatial=True),
        ConvSlot(c_in, wide, 1, first_1x1=True),
        ConvSlot(wide, width, 1),
    ]


class Block(nn.Module):
    """A residual block: its three convs (block_convs), each followed by a norm and an
    activation where the spec keeps them [and GRN]; then layer scale and drop path on the
    branch, the shortcut (a projection where the shape changes) added, and ResNet's activation
    after the sum when activations follow every conv."""

    def __init__(self, spec: NetSpec, c_in: int, width: int, stride: int, drop_path: float) -> None:
        super().__init__()
        convs = block_convs(spec, c_in, width, stride)
        c_out = convs[-1].c_out
        bias_free = resnet_style_bias_free(spec)
        layers: list[nn.Module] = []
        for slot in convs:
            groups = slot.c_in if (slot.spatial and spec.depthwise) else 1
            if groups > 1 and slot.c_in != slot.c_out:
                raise ValueError(f"a depthwise conv cannot map {slot.c_in} to {slot.c_out} channels")
            norm_here = spec.block_norms == "every_conv" or slot.spatial
            layers.append(
                make_conv(
                    spec,
                    slot.c_in,
                    slot.c_out,
                    slot.kernel,
                    slot.stride,
                    groups,
                    followed_by_norm=norm_here,
                    bias=not (bias_free and slot.kernel == 1),
                )
            )
            if norm_here:
                layers.append(make_norm(spec.norm, slot.c_out))
            last = slot is convs[-1]
            if (spec.block_activations == "every_conv" and not last) or (
                spec.block_activations == "one" and slot.first_1x1
            ):
                layers.append(make_activation(spec.activation))
            if spec.grn and slot.first_1x1:
                layers.append(GRN(slot.c_out))
        self.branch = nn.Sequential(*layers)
        self.layer_scale = LayerScale(c_out, spec.layer_scale_init) if spec.layer_scale_init else nn.Identity()
        self.drop_path = StochasticDepth(drop_path, "row") if drop_path > 0 else nn.Identity()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                make_conv(spec, c_in, c_out, 1, stride, followed_by_norm=True, bias=not bias_free),
                make_norm(spec.norm, c_out),
            )
        self.post_activation = (
            make_activation(spec.activation) if spec.block_activations == "every_conv" else nn.Identity()
        )
        self.out_channels = c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The branch first and the sum in place: a sum takes its first operand's strides, and the
        # branch keeps a channels_last input's, which the CPU's depthwise kernels need to be fast.
        out = self.drop_path(self.layer_scale(self.branch(x)))
        out += self.shortcut(x)
        return self.post_activation(out)


class RoadmapNet(nn.Module):
    """stem -> 4 stages of `Block`s (joined by strided first blocks or separate downsampling
    layers) -> global average pooling -> [LN] -> linear classifier. `drop_path_rate` is the
    stochastic depth of the last block, rising linearly from 0 at the first (a training
    setting, not part of the architecture)."""

    def __init__(self, spec: NetSpec, num_classes: int = 1000, in_chans: int = 3, drop_path_rate: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
        self.spec = spec
        w = spec.base_width
        if spec.stem == "resnet":  # 7x7/2 conv, norm, activation, 3x3/2 max-pool
            self.stem = nn.Sequential(
                make_conv(spec, in_chans, w, 7, 2, followed_by_norm=True),
                make_norm(spec.norm, w),
                make_activation(spec.activation),
                nn.MaxPool2d(3, 2, 1),
            )
        else:  # "patchify": one conv of kernel and stride patch_size [, LN]
            p = spec.patch_size
            layers = [make_conv(spec, in_chans, w, p, p, followed_by_norm=spec.separate_downsampling, patch=True)]
            if spec.separate_downsampling:
                layers.append(make_norm(spec.norm, w))
            self.stem = nn.Sequential(*layers)

        total_blocks = sum(spec.stage_depths)
        block_index = 0
        channels = w
        self.stages = nn.ModuleList()
        for stage, depth in enumerate(spec.stage_depths):
            width = w * 2**stage
            layers = []
            stride = 1 if stage == 0 else 2
            if spec.separate_downsampling and stage > 0:  # LN + 2x2/2 conv between stages
                layers.append(nn.Sequential(make_norm(spec.norm, channels), make_conv(spec, channels, width, 2, 2)))
                channels, stride = width, 1
            for _ in range(depth):
                rate = drop_path_rate * block_index / max(total_blocks - 1, 1)
                block = Block(spec, channels, width, stride, rate)
                layers.append(block)
                channels, stride = block.out_channels, 1
                block_index += 1
            self.stages.append(nn.Sequential(*layers))

        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.head_norm = nn.LayerNorm(channels, eps=1e-6) if spec.separate_downsampling else nn.Identity()
        self.fc = nn.Linear(channels, num_classes)
        self.num_features = channels
        if spec.init == "trunc_normal":
            self.apply(_init_weights)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.head_norm(self.pool(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x))


def _init_weights(module: nn.Module) -> None:
    """init="trunc_normal": one initialisation for every step (the released ConvNeXt's), so
    that init is never a hidden difference between two steps. Norms keep PyTorch's 1/0."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
