"""What `precision: auto` means on this machine. fp32 and bf16 runs are different runs, so the
resolved precision is part of every run's identity."""

from __future__ import annotations

import functools
from pathlib import Path

import torch


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Does this CPU compute bf16 dot products in hardware (AVX-512 BF16 or AMX)? Without
    them bf16 is emulated and slower than fp32; read from /proc/cpuinfo (Linux)."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    return bool({"avx512_bf16", "amx_bf16"} & set(flags))


@functools.cache
def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux): kernels and their rounding differ between
    CPU models, so a run's numbers are reproducible bit for bit on the same model only."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def resolve_precision(cfg_precision: str, accelerator: str = "auto") -> str:
    """`auto`: bf16 mixed precision where the hardware has it (fp16 on older GPUs), else fp32
    (docs/speed.md measures bf16 against fp32 on the development CPU)."""
    if cfg_precision != "auto":
        return cfg_precision
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        return "bf16-mixed"  # planning a GPU study without a GPU (login node): assume a current GPU
    if torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda"):
        # bf16 in hardware (compute capability 8.0 on: A100, H100, RTX 30xx); the default of
        # is_bf16_supported counts emulation, which a V100 or T4 has, at a fraction of fp16's speed
        return "bf16-mixed" if torch.cuda.is_bf16_supported(including_emulation=False) else "16-mixed"
    return "bf16-mixed" if cpu_has_native_bf16() else "32-true"
