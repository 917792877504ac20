"""The knobs of the roadmap: one frozen `NetSpec` per step. Every knob is one of the paper's
changes, so two steps differ exactly in the knobs their change names."""

from __future__ import annotations

import typing
from dataclasses import dataclass, fields
from typing import Literal

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
    grn: bool = False
    init: InitKind = "trunc_normal"
    conv_bias: ConvBiasKind = "unless_batchnorm"

    def __post_init__(self) -> None:
        for f in fields(self):
            value, kind = getattr(self, f.name), _FIELD_TYPES[f.name]
            if typing.get_origin(kind) is Literal:
                if value not in typing.get_args(kind):
                    raise ValueError(
                        f"NetSpec.{f.name}={value!r}; allowed: {', '.join(map(repr, typing.get_args(kind)))}"
                    )
            elif not matches(value, kind):
                raise ValueError(f"NetSpec.{f.name}={value!r}; allowed: {type_text(kind)}")
        if len(self.stage_depths) != 4 or min(self.stage_depths) < 1:
            raise ValueError(f"NetSpec.stage_depths={self.stage_depths!r}; need 4 positive ints")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"NetSpec.kernel_size={self.kernel_size}; need an odd positive int")
        if self.base_width < 1:
            raise ValueError(f"NetSpec.base_width={self.base_width}; need a positive int")
        if self.patch_size < 1:
            raise ValueError(f"NetSpec.patch_size={self.patch_size}; need a positive int")
        if self.grn and self.block == "bottleneck":
            raise ValueError(
                "NetSpec.grn needs block 'inverted' or 'dw_first' (a 1x1 conv expanding to 4C followed by another)"
            )

    def diff(self, other: NetSpec) -> set[str]:
        """Names of the fields whose values differ between two specs."""
        return {f.name for f in fields(self) if getattr(self, f.name) != getattr(other, f.name)}


_FIELD_TYPES = typing.get_type_hints(NetSpec)
