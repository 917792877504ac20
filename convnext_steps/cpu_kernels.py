"""Faster CPU kernels for a built roadmap network, applied on request: the same function, the
same parameters and state_dict keys, computed by other kernels where PyTorch's CPU defaults
are slow at the shapes of small images. The runner applies them to every model it trains;
`build_model` does not, so a model from the Python API is the paper's plain layers.

    model = use_cpu_kernels(build_model("convnext_t", num_classes=10))

Each substitution swaps a module's class in place (`use_plain_kernels` swaps back):
- `NhwcGELU` for nn.GELU: GELU on the NHWC view of a channels_last tensor, whose CPU kernel
  is faster on contiguous memory than on channels_last strides.
- `TrimmedKernelConv` for odd kxk convs: at stride 1, the kernel taps that can only ever meet
  zero padding (a 7x7 kernel on a 2x2 or 1x1 map) are left out; the output and gradients are
  the same, the work is less.
- `DepthwiseConv` (a TrimmedKernelConv): under CPU bf16 autocast, trains in fp32 on maps of at
  most SMALL_MAP_PIXELS, where oneDNN's bf16 depthwise backward is slow.
- `PointwiseConv` for 1x1 convs: under CPU bf16 autocast on small channels_last maps, a matrix
  multiply over channels; in fp32, conv or matmul by measurement on this machine (autotune.py,
  the only substitution that measures, and only on the CPU in fp32).
benchmarks/throughput.py and benchmarks/pointwise.py measure each choice; docs/speed.md.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import autotune

# Maps up to this many pixels (every map of a 32px input; stage 4 at 224px) take the bf16 paths
# of PointwiseConv and DepthwiseConv on the CPU (benchmarks/pointwise.py).
SMALL_MAP_PIXELS = 8 * 8


def small_map_under_cpu_bf16(x: torch.Tensor) -> bool:
    """Whether x is a CPU map of at most SMALL_MAP_PIXELS under bf16 autocast."""
    return (
        x.is_cpu
        and x.shape[-2] * x.shape[-1] <= SMALL_MAP_PIXELS
        and torch.is_autocast_enabled("cpu")
        and torch.get_autocast_dtype("cpu") == torch.bfloat16
    )


class NhwcGELU(nn.GELU):
    """nn.GELU computed on the NHWC view of a channels_last tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
            return F.gelu(x.permute(0, 2, 3, 1), approximate=self.approximate).permute(0, 3, 1, 2)
        return super().forward(x)


class PointwiseConv(nn.Conv2d):
    """A 1x1 conv computed by oneDNN's conv or as a matrix multiply over channels, whichever is
    faster where it runs:
    - under CPU bf16 autocast, on channels_last maps of at most SMALL_MAP_PIXELS: the matmul;
    - elsewhere on the CPU at stride 1: chosen by measurement once per shape, dtype and thread
      count on this machine (autotune.py);
    - on a GPU, strided, tiny (autotune.MEASURE_FROM_MACS), or while torch.compile or
      torch.jit traces: nn.Conv2d.

    `pointwise_choices` holds the choices this module has made (key -> conv or matmul);
    `pointwise_pinned` (autotune.use_choices) makes keys it has not seen take one path."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pointwise_choices: dict[str, str] = {}
        self.pointwise_pinned: str | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            self.stride != (1, 1)
            or self.padding != (0, 0)
            or self.groups != 1
            or not x.is_cpu
            or torch.compiler.is_compiling()
            or torch.jit.is_tracing()
        ):
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


class TrimmedKernelConv(nn.Conv2d):
    """A kxk conv that, at stride 1, leaves out the kernel taps which can only ever meet zero
    padding. Same parameters, output and gradients as nn.Conv2d (a left-out tap's gradient is
    exactly zero either way); less work where the map is smaller than the kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh, kw = self.kernel_size
        reach_h, reach_w = min(kh, 2 * x.shape[-2] - 1), min(kw, 2 * x.shape[-1] - 1)
        if self.stride != (1, 1) or (reach_h, reach_w) == (kh, kw):
            return self._convolve(x, self.weight, self.padding)
        top, left = (kh - reach_h) // 2, (kw - reach_w) // 2
        weight = self.weight[:, :, top : top + reach_h, left : left + reach_w]
        return self._convolve(x, weight, (reach_h // 2, reach_w // 2))

    def _convolve(self, x: torch.Tensor, weight: torch.Tensor, padding: Any) -> torch.Tensor:
        return F.conv2d(x, weight, self.bias, self.stride, padding, self.dilation, self.groups)


class DepthwiseConv(TrimmedKernelConv):
    """A depthwise TrimmedKernelConv that, under CPU bf16 autocast, trains in fp32 on maps of at
    most SMALL_MAP_PIXELS, as autocast keeps norms in fp32. Evaluation (no autograd) stays in
    bf16, whose forward is not slow; GPUs are unaffected."""

    def _convolve(self, x: torch.Tensor, weight: torch.Tensor, padding: Any) -> torch.Tensor:
        if small_map_under_cpu_bf16(x) and torch.is_grad_enabled():
            with torch.autocast("cpu", enabled=False):
                return super()._convolve(x.float(), weight, padding)
        return super()._convolve(x, weight, padding)


def _kernel_for(conv: nn.Conv2d) -> type[nn.Conv2d] | None:
    """The faster class for one conv of a roadmap network, or None to leave it."""
    k = conv.kernel_size[0]
    if conv.groups > 1:
        return DepthwiseConv
    if conv.kernel_size == (1, 1):
        return PointwiseConv
    if k % 2 == 1 and conv.padding == (k // 2, k // 2):  # an odd "same" conv (not a patchify stem)
        return TrimmedKernelConv
    return None


def use_cpu_kernels(model: nn.Module) -> nn.Module:
    """Swap the faster CPU kernels into a RoadmapNet, in place (other models are left alone).
    A patchify stem (a kernel-sized stride, no padding) stays a plain conv."""
    from .network import RoadmapNet

    if not isinstance(model, RoadmapNet):
        return model
    patch_stem = model.stem[0] if model.spec.stem == "patchify" else None
    for module in model.modules():
        if type(module) is nn.GELU:
            module.__class__ = NhwcGELU
        elif type(module) is nn.Conv2d and module is not patch_stem:
            kind = _kernel_for(module)
            if kind is not None:
                module.__class__ = kind
                if kind is PointwiseConv:
                    module.pointwise_choices, module.pointwise_pinned = {}, None
    return model


def use_plain_kernels(model: nn.Module) -> nn.Module:
    """Undo use_cpu_kernels, in place: every substituted module is its plain class again."""
    for module in model.modules():
        if isinstance(module, (PointwiseConv, TrimmedKernelConv)):
            module.__class__ = nn.Conv2d
            for name in ("pointwise_choices", "pointwise_pinned"):
                module.__dict__.pop(name, None)
        elif isinstance(module, NhwcGELU):
            module.__class__ = nn.GELU
    return model
