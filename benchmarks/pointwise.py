#!/usr/bin/env python3
"""1x1 convolution on channels_last tensors: oneDNN's conv vs a matmul over channels.

Why: torchvision's ConvNeXt computes its 1x1 convs as nn.Linear over channels (a BLAS
matmul, MKL on x86), ResNet as nn.Conv2d (oneDNN). Which is faster depends on the CPU, and
in fp32 on more than its model name: on an Intel Xeon the matmul won on maps up to 14x14; on
the AMD EPYC (Zen 4, AVX-512) this project is developed on, one day's run found MKL's fp32
matmul at about half the speed of oneDNN's 1x1 conv at every shape, and a profile on another
machine of the same kind found the opposite. So in fp32 the runner does not follow a rule:
`PointwiseConv` measures both once per shape on the machine it runs on and keeps the faster
(convnext_steps/autotune.py). Under bf16 autocast both are oneDNN's and tie per op, while in
whole models the matmul trains every step 1.1-1.3x faster at the default study's shapes (and
ConvNeXt-T 1.9x at width 1), the layers around it running on its NHWC output: there
`PointwiseConv` takes the matmul on maps up to 8x8 by rule. This script prints the per-op
numbers, in fp32 and bf16, for the 1x1 shapes of ResNet-50 and ConvNeXt-T at 224x224 batch 32
and of the default study (32x32, batch 256, width 0.25), and in fp32 what the runner's
measurement chooses for each (`runner_choice`).

    python benchmarks/pointwise.py [--iters 8]
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from throughput import cpu_description, median_seconds  # noqa: E402

from convnext_steps import autotune  # noqa: E402

# (batch, in channels, out channels, map side)
SHAPES = [
    (32, 64, 256, 56),
    (32, 256, 64, 56),
    (32, 96, 384, 56),
    (32, 384, 96, 56),
    (32, 128, 512, 28),
    (32, 512, 128, 28),
    (32, 192, 768, 28),
    (32, 768, 192, 28),
    (32, 256, 1024, 14),
    (32, 1024, 256, 14),
    (32, 384, 1536, 14),
    (32, 1536, 384, 14),
    (32, 512, 2048, 7),
    (32, 2048, 512, 7),
    (32, 768, 3072, 7),
    (32, 3072, 768, 7),
    (256, 16, 64, 8),
    (256, 64, 16, 8),
    (256, 24, 96, 8),
    (256, 96, 24, 8),
    (256, 128, 32, 4),
    (256, 192, 48, 4),
    (256, 64, 256, 2),
]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iters", type=int, default=8)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "pointwise.csv")
    args = p.parse_args()
    rows = []
    for (batch, c_in, c_out, side), dtype in itertools.product(SHAPES, ("fp32", "bf16")):
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16")
        weight = torch.randn(c_out, c_in, 1, 1, requires_grad=True)
        x = torch.randn(batch, c_in, side, side).to(memory_format=torch.channels_last)
        x.requires_grad_()
        grad = torch.randn(batch, c_out, side, side).to(memory_format=torch.channels_last)

        def conv(x=x, weight=weight, autocast=autocast) -> torch.Tensor:
            with autocast:
                return F.conv2d(x, weight)

        def matmul(x=x, weight=weight, autocast=autocast) -> torch.Tensor:
            with autocast:
                return F.linear(x.permute(0, 2, 3, 1), weight.flatten(1)).permute(0, 3, 1, 2)

        row = {
            "dtype": dtype,
            "batch": batch,
            "c_in": c_in,
            "c_out": c_out,
            "map": f"{side}x{side}",
            "pixels": side * side,
        }
        for name, fn in (("conv", conv), ("matmul", matmul)):
            row[f"train_{name}_ms"] = 1e3 * median_seconds(lambda fn=fn, grad=grad: fn().backward(grad), 2, args.iters)
            with torch.inference_mode():
                row[f"eval_{name}_ms"] = 1e3 * median_seconds(fn, 2, args.iters)
        row["train_matmul_speedup"] = row["train_conv_ms"] / row["train_matmul_ms"]
        row["eval_matmul_speedup"] = row["eval_conv_ms"] / row["eval_matmul_ms"]
        row["faster_in_training"] = "matmul" if row["train_matmul_speedup"] > 1 else "conv"
        if dtype == "fp32":  # what PointwiseConv would take here (a fresh measurement, not the cache)
            row["runner_choice"] = autotune.faster(autotune.measure(x, c_out, False, True))
        row["cpu"] = cpu_description()
        rows.append(row)
        print(
            f"{dtype} {batch:3d} x {c_in:4d}->{c_out:4d} on {side:2d}x{side:<2d}: train conv "
            f"{row['train_conv_ms']:7.2f} ms, matmul {row['train_matmul_ms']:7.2f} ms "
            f"({row['train_matmul_speedup']:.2f}x); eval {row['eval_matmul_speedup']:.2f}x",
            flush=True,
        )
    df = pd.DataFrame(rows)
    for (dtype, study), group in df.groupby(["dtype", df["batch"] == 32]):
        print(
            f"{dtype} {'224px shapes' if study else 'default-study shapes'}: summed training time conv "
            f"{group['train_conv_ms'].sum():.1f} ms, matmul {group['train_matmul_ms'].sum():.1f} ms"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out, index=False)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
