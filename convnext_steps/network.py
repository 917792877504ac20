"""One configurable network that can be every step of the ResNet-50 -> ConvNeXt-T roadmap.

A step is a frozen `NetSpec`; `RoadmapNet(spec)` builds it. Every knob is one of the
paper's changes, so two steps differ exactly in the knobs their change names.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, fields
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import StochasticDepth

from . import autotune
from .typecheck import matches, type_text

StemKind = Literal["resnet", "patchify"]
BlockKind = Literal["bottleneck", "inverted", "dw_first"]
Placement = Literal["every_conv", "one"]
NormKind = Literal["batch", "layer"]
ActivationKind = Literal["relu", "gelu"]
InitKind = Literal["trunc_normal", "pytorch_default"]
ConvBiasKind = Literal["unless_batchnorm", "authors"]
LAYER_SCALE_INIT = 1e-6  # Table 5's layer scale init, as in the released ConvNeXt


@dataclass(frozen=True)
class NetSpec:
    """Architecture of one roadmap step. Defaults are torchvision's ResNet-50.

    stage_depths: blocks per stage.
    stem: "resnet" = 7x7/2 conv, norm, act, 3x3/2 max-pool; "patchify" = one conv of kernel
        and stride patch_size (4; 2 or 1 suit small images). Either works with any block.
    base_width: channels of stage 1's narrow part; stage i has base_width * 2**i.
    block: the order and widths of the block's three convs, C = stage width:
        "bottleneck" 1x1 4C->C, kxk C, 1x1 C->4C (ResNet; block output 4C),
        "inverted"   1x1 C->4C, kxk 4C, 1x1 4C->C (MobileNetV2; block output C),
        "dw_first"   kxk C, 1x1 C->4C, 1x1 4C->C (Transformer-like; block output C).
    depthwise: the kxk conv has one group per channel.
    kernel_size: k of the spatial conv.
    activation: ReLU or GELU, wherever activations are kept.
    block_activations: "every_conv" = after the first two convs and after the residual add
        (ResNet); "one" = only after the first 1x1 conv (between the 1x1 convs of "dw_first").
    block_norms: "every_conv" = after each conv (ResNet); "one" = only after the kxk conv.
    norm: BatchNorm or LayerNorm over channels (eps 1e-6, as ConvNeXt).
    separate_downsampling: stages are joined by LN + 2x2/2 conv instead of strided blocks with
        projection shortcuts; LN is also added after the stem and after global pooling.
    layer_scale_init: initial value of a learnable per-channel scale of the residual branch
        (None = no layer scale).
    drop_path_rate: stochastic depth of the last block; it rises linearly from 0 at the first.
    grn: ConvNeXt V2's Global Response Normalization (Woo et al. 2023) on the 4C channels
        after the expanding 1x1 conv and its activation; inverted and dw_first blocks only.
    init: "trunc_normal" = every conv and linear weight trunc. normal std 0.02, biases zero
        (Table 5); "pytorch_default" = PyTorch's own init (kaiming-uniform, uniform biases).
    conv_bias: "unless_batchnorm" = a conv has a bias unless a BatchNorm follows it;
        "authors" = also none on the block's 1x1 convs and the shortcut projections while
        downsampling is ResNet's (steps before separate_downsampling), as the authors' code.
    """

    stage_depths: tuple[int, int, int, int] = (3, 4, 6, 3)
    stem: StemKind = "resnet"
    patch_size: int = 4
    base_width: int = 64
    block: BlockKind = "bottleneck"
    depthwise: bool = False
    kernel_size: int = 3
    activation: ActivationKind = "relu"
    block_activations: Placement = "every_conv"
    block_norms: Placement = "every_conv"
    norm: NormKind = "batch"
    separate_downsampling: bool = False
    layer_scale_init: float | None = None
    drop_path_rate: float = 0.0
    grn: bool = False
    init: InitKind = "trunc_normal"
    conv_bias: ConvBiasKind = "unless_batchnorm"

    def __post_init__(self) -> None:
        for f in fields(self):
            value, kind = getattr(self, f.name), _FIELD_TYPES[f.name]
            if typing.get_origin(kind) is Literal:
                if value not in typing.get_args(kind):
                    raise ValueError(f"NetSpec.{f.name}={value!r}; allowed: {', '.join(map(repr, typing.get_args(kind)))}")
            elif not matches(value, kind):
                raise ValueError(f"NetSpec.{f.name}={value!r}; allowed: {type_text(kind)}")
        if len(self.stage_depths) != 4 or min(self.stage_depths) < 1:
            raise ValueError(f"NetSpec.stage_depths={self.stage_depths!r}; need 4 positive ints")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"NetSpec.kernel_size={self.kernel_size}; need an odd positive int")
        if self.base_width < 1 or not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError("NetSpec.base_width must be >= 1 and drop_path_rate in [0, 1)")
        if self.patch_size < 1:
            raise ValueError(f"NetSpec.patch_size={self.patch_size}; need a positive int")
        if self.grn and self.block == "bottleneck":
            raise ValueError("NetSpec.grn needs block 'inverted' or 'dw_first' (a 1x1 conv expanding to 4C "
                             "followed by another)")

    def diff(self, other: NetSpec) -> set[str]:
        """Names of the fields whose values differ between two specs."""
        return {f.name for f in fields(self) if getattr(self, f.name) != getattr(other, f.name)}


_FIELD_TYPES = typing.get_type_hints(NetSpec)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor, at each pixel (the paper's "LN")."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def make_norm(kind: NormKind, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels) if kind == "batch" else LayerNorm2d(channels, eps=1e-6)


class GELU(nn.GELU):
    """nn.GELU, computed on the NHWC view of a channels_last tensor: PyTorch's CPU GELU
    kernel takes ~2x longer on channels_last strides than on the same memory seen as a
    contiguous NHWC tensor (1.21 vs 0.63 ms for 128x384x8x8 on the development machine,
    torch 2.14; ReLU is not affected)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
            return F.gelu(x.permute(0, 2, 3, 1), approximate=self.approximate).permute(0, 3, 1, 2)
        return super().forward(x)


def make_activation(kind: ActivationKind) -> nn.Module:
    return nn.ReLU(inplace=True) if kind == "relu" else GELU()


# Maps up to this many pixels (8x8: every map of the default study's 32px input; at 224px only
# stage 4's 7x7) take the bf16 special paths of PointwiseConv and DepthwiseConv on CPU; larger
# maps do not gain from them (benchmarks/pointwise.py, README "Speed").
SMALL_MAP_PIXELS = 8 * 8


def small_map_under_cpu_bf16(x: torch.Tensor) -> bool:
    """Whether x is a CPU map of at most SMALL_MAP_PIXELS under bf16 autocast: the one case
    where PointwiseConv and DepthwiseConv leave nn.Conv2d's path."""
    return (x.is_cpu and x.shape[-2] * x.shape[-1] <= SMALL_MAP_PIXELS
            and torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)


class PointwiseConv(nn.Conv2d):
    """A 1x1 conv computed either by oneDNN's conv or as a matrix multiply over channels (as
    torchvision's ConvNeXt does with nn.Linear), whichever is faster where it runs. Same
    parameters and function as nn.Conv2d.

    - Under CPU bf16 autocast, on maps of at most 8x8 and channels_last: the matmul, by a rule
      measured in whole models (both paths are oneDNN's there; every step of the default study
      trains 1.1-1.3x faster with it, ConvNeXt-T at width 1 1.9x, while on 14x14 and larger
      maps the bf16 conv is 1.0-1.2x faster: benchmarks/pointwise.py, README "Speed").
    - Elsewhere on the CPU (fp32; any map), stride 1: chosen by measurement once per shape,
      dtype and thread count on this machine (convnext_steps/autotune.py). In fp32 the
      matmul is the BLAS's (MKL), the conv oneDNN's, and which is faster depends on the CPU.
    - On a GPU, strided, tiny (autotune.MEASURE_FROM_MACS), or while torch.compile or
      torch.jit traces: nn.Conv2d.

    `pointwise_choices` holds the choices this module has made (key -> conv or matmul);
    `pointwise_pinned` (autotune.use_choices) makes keys it has not seen take one path."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pointwise_choices: dict[str, str] = {}
        self.pointwise_pinned: str | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.stride != (1, 1) or self.padding != (0, 0) or self.groups != 1 or not x.is_cpu
                or torch.compiler.is_compiling() or torch.jit.is_tracing()):
            return super().forward(x)
        if torch.is_autocast_enabled("cpu"):
            if small_map_under_cpu_bf16(x) and x.is_contiguous(memory_format=torch.channels_last):
                return autotune.matmul1x1(x, self.weight, self.bias)
            return super().forward(x)
        if not autotune.active(x, self.out_channels):
            return super().forward(x)
        key = autotune.key_of(x, self.out_channels, self.bias is not None, torch.is_grad_enabled())
        choice = self.pointwise_choices.get(key)
        if choice is None:
            if self.pointwise_pinned is not None:
                choice = self.pointwise_pinned
            else:
                key, choice = autotune.choose(x, self.out_channels, self.bias is not None, torch.is_grad_enabled())
            self.pointwise_choices[key] = choice
        return autotune.IMPLEMENTATIONS[choice](x, self.weight, self.bias)


class SameConv(nn.Conv2d):
    """A kxk conv that, at stride 1, leaves out the kernel taps which can only ever meet zero
    padding. Same parameters, output and gradients as nn.Conv2d (a left-out tap's gradient
    is exactly zero either way); cheaper where the map is smaller than the kernel.

    Why: at 32x32 input, stage 3 is 2x2 and stage 4 1x1. There a 7x7 conv reaches only its
    central 3x3 and 1x1 taps, yet oneDNN computes all 49, and its depthwise backward is the
    largest single cost of the large-kernel steps (the default study's steps 6-15)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh, kw = self.kernel_size
        reach_h, reach_w = min(kh, 2 * x.shape[-2] - 1), min(kw, 2 * x.shape[-1] - 1)
        if self.stride != (1, 1) or (reach_h, reach_w) == (kh, kw):
            return self._convolve(x, self.weight, self.padding)
        top, left = (kh - reach_h) // 2, (kw - reach_w) // 2
        weight = self.weight[:, :, top:top + reach_h, left:left + reach_w]
        return self._convolve(x, weight, (reach_h // 2, reach_w // 2))

    def _convolve(self, x: torch.Tensor, weight: torch.Tensor, padding: Any) -> torch.Tensor:
        return F.conv2d(x, weight, self.bias, self.stride, padding, self.dilation, self.groups)


class DepthwiseConv(SameConv):
    """A depthwise SameConv that, under CPU bf16 autocast, trains in fp32 on maps of at most
    8x8, as autocast keeps norms and softmax in fp32. Why: on the development CPU (AMD EPYC,
    AVX-512 BF16) oneDNN's bf16 depthwise backward is 1.3-10x slower than its fp32 one on
    such maps (the default study's 32px input gives 8x8 to 1x1), and made bf16 training of
    steps 3-15 slower than fp32 (0.37-0.86x). On larger maps (224px input) casting to fp32
    costs more than it saves (ConvNeXt-T at 224px: 0.84x with every depthwise conv in fp32,
    0.99x with this threshold). Its bf16 forward is as fast or faster, so evaluation (no
    autograd) stays in bf16. GPUs are unaffected."""

    def _convolve(self, x: torch.Tensor, weight: torch.Tensor, padding: Any) -> torch.Tensor:
        if small_map_under_cpu_bf16(x) and torch.is_grad_enabled():
            with torch.autocast("cpu", enabled=False):
                return super()._convolve(x.float(), weight, padding)
        return super()._convolve(x, weight, padding)


def conv(spec: NetSpec, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1,
         followed_by_norm: bool = False, bias: bool = True, patch: bool = False) -> nn.Conv2d:
    """A conv with a bias unless `bias` is False or a BatchNorm follows it (BN cancels a bias;
    LN does not). Odd kernels are padded to keep the map ("same"), except a `patch` conv."""
    bias = bias and not (followed_by_norm and spec.norm == "batch")
    same = kernel % 2 == 1 and not patch
    if groups > 1:
        kind: type[nn.Conv2d] = DepthwiseConv
    elif kernel == 1 and not patch:  # a 1x1 patch stem sees 1 or 3 channels: no matmul to gain
        kind = PointwiseConv
    else:
        kind = SameConv if same else nn.Conv2d
    return kind(c_in, c_out, kernel, stride, padding=kernel // 2 if same else 0, groups=groups, bias=bias)


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


class Block(nn.Module):
    """A residual block: three convs laid out as `spec.block`, with norms and activations
    where the spec keeps them, [GRN,] an optional projection shortcut, layer scale and drop path."""

    def __init__(self, spec: NetSpec, c_in: int, width: int, stride: int, drop_path: float) -> None:
        super().__init__()
        k = spec.kernel_size
        c_out = 4 * width if spec.block == "bottleneck" else width
        # (c_in, c_out, kernel, stride, groups) of the three convs; `spatial` indexes the kxk.
        if spec.block == "bottleneck":
            plan = [(c_in, width, 1, 1), (width, width, k, stride), (width, c_out, 1, 1)]
            spatial = 1
        elif spec.block == "inverted":
            plan = [(c_in, 4 * width, 1, 1), (4 * width, 4 * width, k, stride), (4 * width, c_out, 1, 1)]
            spatial = 1
        else:  # dw_first
            plan = [(c_in, c_in, k, stride), (c_in, 4 * width, 1, 1), (4 * width, c_out, 1, 1)]
            spatial = 0
        first_pointwise = 1 if spatial == 0 else 0  # expands to 4C in inverted and dw_first
        bias_free = resnet_style_bias_free(spec)

        layers: list[nn.Module] = []
        for i, (a, b, kernel, s) in enumerate(plan):
            groups = a if (i == spatial and spec.depthwise) else 1
            if groups > 1 and a != b:
                raise ValueError(f"a depthwise conv cannot map {a} to {b} channels")
            has_norm = spec.block_norms == "every_conv" or i == spatial
            layers.append(conv(spec, a, b, kernel, s, groups, followed_by_norm=has_norm,
                               bias=not (bias_free and kernel == 1)))
            if has_norm:
                layers.append(make_norm(spec.norm, b))
            last = i == len(plan) - 1
            if (spec.block_activations == "every_conv" and not last) or (
                    spec.block_activations == "one" and i == first_pointwise):
                layers.append(make_activation(spec.activation))
            if spec.grn and i == first_pointwise:
                layers.append(GRN(b))
        self.branch = nn.Sequential(*layers)
        self.layer_scale = LayerScale(c_out, spec.layer_scale_init) if spec.layer_scale_init else nn.Identity()
        self.drop_path = StochasticDepth(drop_path, "row") if drop_path > 0 else nn.Identity()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(conv(spec, c_in, c_out, 1, stride, followed_by_norm=True,
                                               bias=not bias_free), make_norm(spec.norm, c_out))
        self.post_activation = (make_activation(spec.activation)
                                if spec.block_activations == "every_conv" else nn.Identity())
        self.out_channels = c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Branch first: a sum takes its first operand's strides, and the branch's are
        # channels_last (convs and LN keep them). With NCHW strides, a 7x7 depthwise conv
        # on a 1x1 map (stage 4 at 32px) takes a oneDNN path ~100x slower.
        out = self.drop_path(self.layer_scale(self.branch(x)))
        out += self.shortcut(x)  # in place: keeps the branch's strides
        return self.post_activation(out)


class RoadmapNet(nn.Module):
    """stem -> 4 stages of `Block`s (joined by strided first blocks or separate downsampling
    layers) -> global average pooling -> [LN] -> linear classifier."""

    def __init__(self, spec: NetSpec, num_classes: int = 1000, in_chans: int = 3) -> None:
        super().__init__()
        self.spec = spec
        w = spec.base_width
        if spec.stem == "resnet":
            self.stem = nn.Sequential(conv(spec, in_chans, w, 7, 2, followed_by_norm=True),
                                      make_norm(spec.norm, w), make_activation(spec.activation),
                                      nn.MaxPool2d(3, 2, 1))
        else:
            p = spec.patch_size
            layers = [conv(spec, in_chans, w, p, p, followed_by_norm=spec.separate_downsampling, patch=True)]
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
            if spec.separate_downsampling and stage > 0:
                layers.append(nn.Sequential(make_norm(spec.norm, channels),
                                            conv(spec, channels, width, 2, 2)))
                channels, stride = width, 1
            for _ in range(depth):
                rate = spec.drop_path_rate * block_index / max(total_blocks - 1, 1)
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


def use_plain_convs(model: nn.Module) -> nn.Module:
    """Turn every PointwiseConv and SameConv (DepthwiseConv included) of `model` back into a
    plain nn.Conv2d, in place. Same parameters and fp32 results (to rounding where a 1x1 conv
    took the matmul); for the benchmarks' naive path and for the tests that check that the
    fast convs change nothing."""
    for module in model.modules():
        if isinstance(module, (PointwiseConv, SameConv)):
            module.__class__ = nn.Conv2d
            for name in ("pointwise_choices", "pointwise_pinned"):
                module.__dict__.pop(name, None)
    return model


def _init_weights(module: nn.Module) -> None:
    """init="trunc_normal": one initialisation for every step (the released ConvNeXt's), so
    that init is never a hidden difference between two steps. Norms keep PyTorch's 1/0."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
